"""Build a whole release in one process: every stage of the nightly DAG's release tasks, in order.

The DAG runs the stages as separate tasks (``orchestration/release_tasks.py``); this runs them one
after the other for ``recsys models build-release``, the closed loop's nightly retraining
(``loop/nightly.py``) and the release tests. The training stages are the same launchers the DAG
submits (``spark_jobs/train_retrieval.py``, ``spark_jobs/train_ranker.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from common.manifest import Manifest
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from models.evaluation.release_evaluation import evaluate_on_days
from models.release import (
    ReleaseCheckFailed,
    check_release_indexes,
    finalize_release,
    stage_release,
    training_window,
)
from spark_jobs import train_ranker, train_retrieval


@dataclass(frozen=True)
class BuiltRelease:
    domain: str
    version: str
    manifest: Manifest


def build_release(
    domain: str, logical_date: date, days: int = 14, holdout_days: int = 1, version: str | None = None,
    paths: DataPaths | None = None, registry: ArtifactRegistry | None = None, master: str | None = None,
    retrieval_args: Sequence[str] = (), ranker_args: Sequence[str] = (),
) -> BuiltRelease:
    """Every stage in this process, on the lake's training sets: models train on the ``days`` days ending
    ``holdout_days`` before ``logical_date``, and are evaluated on those last ``holdout_days`` days.
    The release is finalized, not promoted. A failed stage discards the staging directory."""
    paths = paths or DataPaths.default()
    registry = registry or ArtifactRegistry()
    staging = stage_release(domain, version, registry)
    version = staging.name
    train_end = logical_date - timedelta(days=holdout_days)
    window = training_window(train_end, days)
    common_args = ["--domain", domain, "--date", train_end.isoformat(), "--days", str(days), "--release", version,
                   "--data-dir", str(paths.root), *(["--master", master] if master else [])]
    try:
        if train_retrieval.main([*common_args, *retrieval_args]) != 0:
            raise ReleaseCheckFailed("train_retrieval failed")
        check_release_indexes(domain, version, train_end, paths, registry)
        if train_ranker.main([*common_args, *ranker_args]) != 0:
            raise ReleaseCheckFailed("train_ranker failed")
        evaluate_on_days(domain, version, train_end + timedelta(days=1), logical_date, paths, registry)
        manifest = finalize_release(domain, version, window, registry=registry)
    except BaseException:
        registry.discard(domain, version)
        raise
    print(f"[release] finalized {domain}/{version}: {manifest.metrics}", flush=True)
    return BuiltRelease(domain, version, manifest)
