"""The artifact registry: versioned, checksummed releases and the atomic ``CURRENT`` pointer.

Layout under the artifact root (``common.paths.artifacts_root()``)::

    <domain>/.staging/<version>/     a release being built (invisible to readers)
    <domain>/<version>/              a finalized release + manifest.json (never modified afterwards)
    <domain>/CURRENT                 the live version's name (replaced atomically)
    <domain>/HISTORY                 one JSON line per promote / rollback (appended whole, fsynced)

Inside one release (``<domain>/<version>/``; the names below are its layout, defined here once)::

    retrieval/            retrieval bundle: query tower, item + content embeddings, two ScaNN indexes,
                          popularity tables (models.retrieval.export)
    ranker/               saved_model/ + fast/ (models.ranking.export)
    catalog.parquet       the catalog the models were built on (serving's catalog snapshot)
    logs/<stage>/         TensorBoard logs of the training runs
    summary/<stage>.json  what each stage did: training window, rows, metrics, timings

A builder calls :meth:`ArtifactRegistry.stage`, writes its files into the returned directory, then
:meth:`~ArtifactRegistry.finalize` checksums them into ``manifest.json`` and renames the directory
into place. :meth:`~ArtifactRegistry.promote` re-verifies every checksum before it switches
``CURRENT``; serving reads ``CURRENT`` and :meth:`~ArtifactRegistry.release_path`.

Damage a crash or a stray write can leave is read defensively: a ``CURRENT`` that does not name a
version raises :class:`PointerUnreadable` (serving then falls back to the newest release of
:meth:`~ArtifactRegistry.live_stack` that loads; a promote repairs it), and a ``HISTORY`` line that is not a
whole entry (a crash mid-append) is logged and skipped, so history and rollback keep working.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.appends import append_lines, fsync_dir
from common.manifest import MANIFEST, FileEntry, Manifest, code_revision, release_files, sha256_of
from common.paths import artifacts_root

log = logging.getLogger(__name__)
RETRIEVAL_DIR = "retrieval"
RANKER_DIR = "ranker"
CATALOG_FILE = "catalog.parquet"
LOGS_DIR = "logs"
SUMMARY_DIR = "summary"
SHARDS_DIR = "ranker_shards"  # the ranking set's shards while the ranker trains (removed before finalize)
EXAMPLES_DIR = "retrieval_examples"  # the retrieval examples' shards while the towers train (removed after)
CURRENT = "CURRENT"
HISTORY = "HISTORY"
STAGING = ".staging"
_LOCK = ".lock"
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
_RESERVED = {CURRENT, HISTORY}


class RegistryError(Exception):
    """A registry operation that cannot be carried out (unknown release, bad version name, ...)."""


class PointerUnreadable(RegistryError):
    """``CURRENT`` exists but does not name a version (empty, garbage, unreadable): nobody knows what is live."""


class PromotionRefused(RegistryError):
    """``promote``/``rollback`` refused because the target release does not verify."""

    def __init__(self, result: VerificationResult) -> None:
        self.result = result
        super().__init__(f"release {result.domain}/{result.version} refused: " + "; ".join(result.problems))


@dataclass(frozen=True)
class VerificationResult:
    domain: str
    version: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ArtifactRegistry:
    """Releases of every domain under one root (default: ``artifacts_root()``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_root()

    # ---- paths -------------------------------------------------------------------------------

    def domain_dir(self, domain: str) -> Path:
        if not _VERSION_RE.match(domain):
            raise RegistryError(f"invalid domain name {domain!r}")
        return self.root / domain

    def release_path(self, domain: str, version: str) -> Path:
        self._check_version(version)
        return self.domain_dir(domain) / version

    def staging_path(self, domain: str, version: str) -> Path:
        self._check_version(version)
        return self.domain_dir(domain) / STAGING / version

    @staticmethod
    def _check_version(version: str) -> None:
        if not _VERSION_RE.match(version) or version in _RESERVED:
            raise RegistryError(f"invalid version name {version!r} (letters, digits, '.', '_', '-')")

    # ---- building a release ------------------------------------------------------------------

    def stage(self, domain: str, version: str | None = None) -> Path:
        """A fresh staging directory for a new release; ``version`` defaults to the UTC time."""
        (self.domain_dir(domain) / STAGING).mkdir(parents=True, exist_ok=True)
        if version is not None:
            return self._claim(domain, version)
        base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for n in range(1, 1000):
            candidate = base if n == 1 else f"{base}-{n}"
            try:
                return self._claim(domain, candidate)
            except RegistryError:
                continue
        raise RegistryError(f"could not find a free version name for {base}")

    def _claim(self, domain: str, version: str) -> Path:
        staging = self.staging_path(domain, version)
        if self.release_path(domain, version).exists():
            raise RegistryError(f"release {domain}/{version} already exists")
        try:
            staging.mkdir()  # atomic: two builders cannot claim the same version
        except FileExistsError:
            raise RegistryError(f"version {domain}/{version} is already being staged") from None
        return staging

    def discard(self, domain: str, version: str) -> None:
        """Remove an unfinished staging directory (a failed build)."""
        shutil.rmtree(self.staging_path(domain, version), ignore_errors=True)

    def finalize(
        self,
        domain: str,
        version: str,
        *,
        training_window: tuple[str, str] | None,
        metrics: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Checksum the staged files into ``manifest.json`` and move the release into place atomically."""
        staging = self.staging_path(domain, version)
        target = self.release_path(domain, version)
        if not staging.is_dir():
            raise RegistryError(f"no staged release {domain}/{version} (call stage() first)")
        if target.exists():
            raise RegistryError(f"release {domain}/{version} already exists")
        files = {name: FileEntry(sha256_of(p), p.stat().st_size) for name, p in release_files(staging).items()}
        manifest = Manifest(
            version=version,
            domain=domain,
            created_at=_utc_now(),
            code_revision=code_revision(),
            training_window=None if training_window is None else (str(training_window[0]), str(training_window[1])),
            metrics=dict(metrics),
            files=files,
            extra=dict(extra or {}),
        )
        with (staging / MANIFEST).open("wb") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(staging, target)
        fsync_dir(target.parent)
        return manifest

    # ---- reading releases --------------------------------------------------------------------

    def load_manifest(self, domain: str, version: str) -> Manifest:
        path = self.release_path(domain, version) / MANIFEST
        if not path.is_file():
            raise RegistryError(f"release {domain}/{version} has no {MANIFEST}")
        return Manifest.from_json(path.read_bytes())

    def list_releases(self, domain: str) -> list[Manifest]:
        """Every finalized release with a readable manifest, oldest first."""
        root = self.domain_dir(domain)
        if not root.is_dir():
            return []
        manifests = []
        for entry in root.iterdir():
            if entry.is_dir() and _VERSION_RE.match(entry.name) and (entry / MANIFEST).is_file():
                try:
                    manifests.append(self.load_manifest(domain, entry.name))
                except ValueError:
                    continue  # a damaged release is reported by verify(), not listed
        return sorted(manifests, key=lambda m: (m.created_at, m.version))

    def verify(self, domain: str, version: str) -> VerificationResult:
        """Manifest present and parseable, every file present with its size and checksum, nothing extra."""
        release = self.release_path(domain, version)
        if not release.is_dir():
            return VerificationResult(domain, version, (f"release directory {release} does not exist",))
        try:
            manifest = self.load_manifest(domain, version)
        except (RegistryError, ValueError) as err:
            return VerificationResult(domain, version, (str(err),))
        problems: list[str] = []
        if (manifest.domain, manifest.version) != (domain, version):
            problems.append(f"manifest names {manifest.domain}/{manifest.version}, not {domain}/{version}")
        present = release_files(release)
        for name, entry in manifest.files.items():
            path = present.get(name)
            if path is None:
                problems.append(f"missing file: {name}")
            elif (size := path.stat().st_size) != entry.size:
                problems.append(f"size mismatch: {name} (manifest {entry.size} bytes, found {size})")
            elif (digest := sha256_of(path)) != entry.sha256:
                problems.append(f"checksum mismatch: {name} (manifest {entry.sha256[:12]}…, found {digest[:12]}…)")
        problems += [f"file not in manifest: {name}" for name in present if name not in manifest.files]
        return VerificationResult(domain, version, tuple(problems))

    # ---- the live pointer --------------------------------------------------------------------

    def current(self, domain: str) -> str | None:
        """The live version; None when none was ever promoted. Raises :class:`PointerUnreadable` when
        ``CURRENT`` exists but does not hold a valid version name."""
        path = self.domain_dir(domain) / CURRENT
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise PointerUnreadable(f"{path} is unreadable: {type(err).__name__}: {err}") from err
        if not _VERSION_RE.match(text) or text in _RESERVED:
            raise PointerUnreadable(f"{path} does not name a version: {text[:60]!r}")
        return text

    def promote(self, domain: str, version: str) -> str | None:
        """Make ``version`` live after it verifies; returns the previously live version."""
        with self._locked(domain):
            result = self.verify(domain, version)
            if not result.ok:
                raise PromotionRefused(result)
            try:
                previous = self.current(domain)
            except PointerUnreadable as err:  # promoting is how an operator repairs it
                log.warning("%s; promote %s/%s replaces it", err, domain, version)
                previous = None
            if previous != version:
                self._switch(domain, version, action="promote", previous=previous)
            return previous

    def rollback(self, domain: str) -> str:
        """Point ``CURRENT`` back at the version that was live before the current one; returns it."""
        with self._locked(domain):
            stack = self.live_stack(domain)
            if len(stack) < 2:
                raise RegistryError(f"no previously promoted release of {domain!r} to roll back to")
            target = stack[-2]
            result = self.verify(domain, target)
            if not result.ok:
                raise PromotionRefused(result)
            self._switch(domain, target, action="rollback", previous=stack[-1])
            return target

    def history(self, domain: str) -> list[dict[str, Any]]:
        """The promote / rollback entries, oldest first; a line that is not a whole entry (torn by a crash
        mid-append) is logged and skipped."""
        path = self.domain_dir(domain) / HISTORY
        if not path.exists():
            return []
        entries = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            entry = _history_entry(line)
            if entry is None:
                log.error("%s line %d is not a whole history entry (torn write?), skipped: %r", path, number, line[:80])
                continue
            entries.append(entry)
        return entries

    def live_stack(self, domain: str) -> list[str]:
        """Versions that were live, oldest first: a promote pushes, a rollback pops."""
        stack: list[str] = []
        for entry in self.history(domain):
            if entry["action"] == "promote":
                stack.append(entry["version"])
            elif entry["action"] == "rollback" and stack:
                stack.pop()
        return stack

    def _switch(self, domain: str, version: str, *, action: str, previous: str | None) -> None:
        root = self.domain_dir(domain)
        tmp = root / f".{CURRENT}.{uuid.uuid4().hex}.tmp"
        try:
            with tmp.open("w") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, root / CURRENT)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(root)
        line = {"at": _utc_now(), "action": action, "version": version, "previous": previous}
        append_lines(root / HISTORY, orjson.dumps(line) + b"\n")

    @contextmanager
    def _locked(self, domain: str) -> Iterator[None]:
        """Serialise promote/rollback of one domain across processes."""
        root = self.domain_dir(domain)
        root.mkdir(parents=True, exist_ok=True)
        with (root / _LOCK).open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _history_entry(line: bytes) -> dict[str, Any] | None:
    """One HISTORY line as an entry, or None when it is not one (a torn or foreign line)."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict) or entry.get("action") not in {"promote", "rollback"} \
            or not isinstance(entry.get("version"), str):
        return None
    return entry
