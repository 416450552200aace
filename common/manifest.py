"""A release's manifest: what it holds (every file's SHA-256 and size), when and from which code it was built.

Written by :meth:`common.registry.ArtifactRegistry.finalize` as ``manifest.json`` at the root of the
release; every promote and every serving load verifies the files against it.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from common.paths import REPO_ROOT

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    version: str
    domain: str
    created_at: str
    code_revision: str
    training_window: tuple[str, str] | None
    metrics: dict[str, Any]
    files: dict[str, FileEntry]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest; raises ``ValueError`` when it is not a well-formed manifest."""
        try:
            raw = orjson.loads(data)
            window = raw["training_window"]
            return cls(
                version=str(raw["version"]),
                domain=str(raw["domain"]),
                created_at=str(raw["created_at"]),
                code_revision=str(raw["code_revision"]),
                training_window=None if window is None else (str(window[0]), str(window[1])),
                metrics=dict(raw["metrics"]),
                files={str(k): FileEntry(str(v["sha256"]), int(v["size"])) for k, v in raw["files"].items()},
                extra=dict(raw.get("extra") or {}),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"malformed manifest: {type(err).__name__}: {err}") from err


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_files(release: Path) -> dict[str, Path]:
    """Every file of a release by its relative POSIX path, except the manifest itself."""
    files = {p.relative_to(release).as_posix(): p for p in release.rglob("*") if p.is_file()}
    files.pop(MANIFEST, None)
    return dict(sorted(files.items()))


def code_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
