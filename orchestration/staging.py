"""Which release version a night builds, and keeping the staged release safe to retry into.

A night builds ``artifacts/<domain>/<YYYYMMDD of the logical date>``; when that version was already
finalized (a re-run of the night after it built its release), the next free ``YYYYMMDD.2``,
``YYYYMMDD.3``, ... A staging directory left by an interrupted attempt of the chosen version is
reused: each training task first removes what an earlier try of the same task left there
(:class:`ClearStagedPart`), so a retry never trips over a half-written export.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

from common.registry import ArtifactRegistry

LOGS_DIR, SUMMARY_DIR = "logs", "summary"  # models.release's layout: logs/<part>/, summary/<part>.json


def version_name(day: date, attempt: int = 1) -> str:
    base = day.strftime("%Y%m%d")
    return base if attempt == 1 else f"{base}.{attempt}"


def claim_version(registry: ArtifactRegistry, domain: str, day: date, max_attempts: int = 100) -> tuple[str, Path]:
    """The first version of ``day`` not finalized yet and its staging directory (claimed, or reused)."""
    for attempt in range(1, max_attempts + 1):
        version = version_name(day, attempt)
        if registry.release_path(domain, version).exists():
            continue
        staging = registry.staging_path(domain, version)
        return version, staging if staging.is_dir() else registry.stage(domain, version)
    raise RuntimeError(f"{domain}: {max_attempts} releases of {day} already exist")


def clear_staged_part(registry: ArtifactRegistry, domain: str, version: str, part: str) -> list[Path]:
    """Remove ``<part>/``, ``logs/<part>/`` and ``summary/<part>.json`` from a staged release."""
    staging = registry.staging_path(domain, version)
    removed = []
    for path in (staging / part, staging / LOGS_DIR / part, staging / SUMMARY_DIR / f"{part}.json"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


class ClearStagedPart:
    """``pre_execute`` hook of a training task (``--domain D --release V`` in its arguments): clears the
    part of the staged release the task writes, so every try starts clean."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __call__(self, context: Any) -> None:
        args = [str(a) for a in context["task"].application_args]
        removed = clear_staged_part(ArtifactRegistry(), _arg(args, "--domain"), _arg(args, "--release"), self.part)
        if removed:
            print(f"[staging] removed what an earlier try left: {[str(p) for p in removed]}", flush=True)
