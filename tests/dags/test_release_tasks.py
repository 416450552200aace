"""The per-domain release tasks on small hand-made releases: retries, live fallbacks, gate refusals."""

from __future__ import annotations

import pytest

from common.paths import DataPaths
from common.registry import ArtifactRegistry
from orchestration.release_tasks import evaluate, promotion_gate

WINDOW = ["2024-03-08", "2024-03-11"]


@pytest.fixture
def registry(data_paths: DataPaths) -> ArtifactRegistry:
    return ArtifactRegistry()


def _release(registry: ArtifactRegistry, version: str, metrics: dict, promote: bool = False) -> None:
    staging = registry.stage("retail", version)
    (staging / "model.bin").write_bytes(b"weights")
    registry.finalize("retail", version, training_window=tuple(WINDOW), metrics=metrics)
    if promote:
        registry.promote("retail", version)


def test_a_retry_after_finalize_reads_the_manifest(registry: ArtifactRegistry) -> None:
    _release(registry, "20240312", {"ndcg@10": 0.3})
    assert evaluate("retail", "20240312", "2024-03-12", WINDOW) == {
        "version": "20240312", "metrics": {"ndcg@10": 0.3}, "live_version": None, "live_metrics": None}


def test_a_live_release_that_cannot_be_re_evaluated_is_compared_by_its_manifest(registry: ArtifactRegistry) -> None:
    _release(registry, "20240311", {"ndcg@10": 0.25}, promote=True)  # no models in it: re-evaluation fails
    _release(registry, "20240312", {"ndcg@10": 0.3})
    out = evaluate("retail", "20240312", "2024-03-12", WINDOW)
    assert out["live_version"] == "20240311" and out["live_metrics"] == {"ndcg@10": 0.25}
    assert registry.verify("retail", "20240311").ok  # the live release was not written to


def test_the_gate_refuses_a_release_serving_cannot_load(registry: ArtifactRegistry) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    _release(registry, "20240312", {"recall@100": 0.5, "ndcg@10": 0.3, "ranker_auc": 0.7})
    evaluation = {"version": "20240312", "metrics": registry.load_manifest("retail", "20240312").metrics,
                  "live_version": None, "live_metrics": None}
    with pytest.raises(AirflowFailException, match="serving refuses to load it"):
        promotion_gate("retail", evaluation)


def test_the_gate_refuses_a_tampered_release(registry: ArtifactRegistry) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    _release(registry, "20240312", {"recall@100": 0.5, "ndcg@10": 0.3, "ranker_auc": 0.7})
    (registry.release_path("retail", "20240312") / "model.bin").write_bytes(b"Weights")
    evaluation = {"version": "20240312", "metrics": {"recall@100": 0.5, "ndcg@10": 0.3, "ranker_auc": 0.7},
                  "live_version": None, "live_metrics": None}
    with pytest.raises(AirflowFailException, match="verification failed: checksum mismatch: model.bin"):
        promotion_gate("retail", evaluation)
    assert registry.current("retail") is None
