"""The per-domain release tasks of the nightly DAG, around :mod:`models.release` and the registry.

``stage_release`` -> (``train_retrieval``, Spark) -> ``check_indexes`` -> (``train_ranker``, Spark) ->
``evaluate`` -> ``promotion_gate`` -> ``publish``. The model is trained on the window that ends the
day before the logical date ``D`` and evaluated on ``D`` itself -- and so is the live release, on a
throw-away view of its files (a finalized release is never written to), so the gate compares both on
the same held-out day.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from common.paths import DataPaths
from common.registry import ArtifactRegistry
from orchestration.gate import decide
from orchestration.settings import load_settings
from orchestration.staging import claim_version
from orchestration.tasks import fail, fails_fast

log = logging.getLogger(__name__)


def _midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def training_args(domain: str, version: str, window: list[str]) -> list[str]:
    """Arguments of ``spark_jobs/train_retrieval.py`` / ``train_ranker.py`` for a training window."""
    first, last = date.fromisoformat(window[0]), date.fromisoformat(window[1])
    days = (last - first).days + 1
    return ["--domain", domain, "--date", last.isoformat(), "--days", str(days), "--release", version]


def stage_release(domain: str, ds: str, window: list[str]) -> dict[str, Any]:
    """Claim the night's release version of ``domain``; returns it and the training jobs' arguments."""
    version, staging = claim_version(ArtifactRegistry(), domain, date.fromisoformat(ds))
    log.info("%s: building release %s in %s", domain, version, staging)
    args = training_args(domain, version, window)
    return {"version": version, "retrieval_args": args, "ranker_args": args}


@fails_fast
def check_indexes(domain: str, version: str, ds: str) -> dict[str, float]:
    """ScaNN recall against exact search on the queries of a sample of the users active before ``D``."""
    from models.evaluation.lake_samples import index_check_histories
    from models.release import ReleaseCheckFailed, check_indexes

    staging = ArtifactRegistry().staging_path(domain, version)
    histories = index_check_histories(DataPaths.default(), domain, _midnight(date.fromisoformat(ds)))
    try:
        return check_indexes(staging, histories)
    except ReleaseCheckFailed as err:
        fail(f"{domain}/{version}: {err}")


def _evaluate_live(registry: ArtifactRegistry, domain: str, version: str, interactions: Callable[[], pd.DataFrame],
                   holdout: tuple[pd.Timestamp, pd.Timestamp]) -> dict[str, Any]:
    """Metrics of the live release on the holdout, computed on links to its files (a finalized release is
    never written to); its recorded metrics if it cannot be re-evaluated (an old or damaged release)."""
    from common.registry import CATALOG_FILE, RANKER_DIR, RETRIEVAL_DIR, SUMMARY_DIR
    from models.evaluation.release_evaluation import evaluate_release

    release = registry.release_path(domain, version)
    with tempfile.TemporaryDirectory(prefix=f"recsys-live-{domain}-") as tmp:
        view = Path(tmp)
        for name in (RETRIEVAL_DIR, RANKER_DIR, CATALOG_FILE):
            if (release / name).exists():  # a missing one fails the evaluation below: the manifest's figures
                (view / name).symlink_to(release / name)
        if (release / SUMMARY_DIR).is_dir():
            shutil.copytree(release / SUMMARY_DIR, view / SUMMARY_DIR)
        try:
            return evaluate_release(view, interactions(), *holdout)
        except Exception as err:  # any failure of an old release's models means "use what it recorded"
            log.warning("%s/%s cannot be re-evaluated (%s); using its manifest's metrics", domain, version, err)
    return registry.load_manifest(domain, version).metrics


@fails_fast
def evaluate(domain: str, version: str, ds: str, window: list[str]) -> dict[str, Any]:
    """Evaluate the staged release on the day ``D``, finalize it (manifest with its metrics), and evaluate
    the live release on the same day. A retry after the release was finalized reads its manifest."""
    from models.evaluation.lake_samples import evaluation_interactions
    from models.evaluation.release_evaluation import evaluate_release
    from models.release import finalize_release

    registry = ArtifactRegistry()
    day = date.fromisoformat(ds)
    holdout = (_midnight(day), _midnight(day + timedelta(days=1)))
    interactions = cache(lambda: evaluation_interactions(DataPaths.default(), domain, *holdout))
    staging = registry.staging_path(domain, version)
    if staging.is_dir():
        evaluate_release(staging, interactions(), *holdout)
        manifest = finalize_release(domain, version, (date.fromisoformat(window[0]), date.fromisoformat(window[1])),
                                    registry=registry)
    else:
        manifest = registry.load_manifest(domain, version)
    metrics = {**manifest.metrics, **_best_retriever(manifest.extra)}
    live = registry.current(domain)
    live_metrics = None
    if live is not None and live != version:
        live_metrics = _evaluate_live(registry, domain, live, interactions, holdout)
    log.info("%s: candidate %s %s; live %s %s", domain, version, metrics, live, live_metrics)
    return {"version": version, "metrics": metrics, "live_version": live, "live_metrics": live_metrics}


def _best_retriever(extra: dict[str, Any]) -> dict[str, str]:
    """The name of the release's best single retriever on the held-out day (a manifest's metrics keep
    numbers only; the evaluation summary has it), for the gate's ranked-order check to name it."""
    name = ((extra.get("summaries") or {}).get("evaluation") or {}).get("best_retriever")
    return {"best_retriever": name} if isinstance(name, str) else {}


def serving_load_problems(domain: str, version: str) -> list[str]:
    """Load the release the way serving will (``serving.release_loader.serving_refusal``, which
    ``recsys data releases promote`` runs too)."""
    from serving.release_loader import serving_refusal

    refusal = serving_refusal(ArtifactRegistry(), domain, version)
    return [] if refusal is None else [f"serving refuses to load it: {refusal}"]


def promotion_gate(domain: str, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Verify the release, load it as serving would, compare its metrics with the live release's and its
    ranked order with its own best retriever (``orchestration.gate.ranked_vs_retrievers``, tolerance:
    ``ranked_vs_best_retriever`` in the gate's metric settings); fail (no retry, nothing published)
    unless everything passes."""
    version = evaluation["version"]
    problems = list(ArtifactRegistry().verify(domain, version).problems)
    if not problems:
        problems = serving_load_problems(domain, version)
    decision = decide(evaluation["metrics"], evaluation["live_metrics"], problems, load_settings().gate_policy(domain))
    summary = f"{domain}/{version} vs live {evaluation['live_version']}: {decision.summary()}"
    log.info("promotion gate %s", summary)
    if not decision.promote:
        fail(f"promotion refused for {summary}")
    return {"version": version, **decision.as_dict()}


def publish(domain: str, version: str) -> dict[str, Any]:
    """Make the release live: re-verified, then the atomic ``CURRENT`` switch (a no-op if it already is)."""
    previous = ArtifactRegistry().promote(domain, version)
    log.info("%s: CURRENT %s -> %s", domain, previous, version)
    return {"version": version, "previous": previous}
