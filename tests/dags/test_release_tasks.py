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


def test_the_gate_refuses_a_ranked_order_below_its_best_retriever(registry: ArtifactRegistry,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A sound, loadable release with good retrieval whose ranker spoils the order: refused, and the reason
    names the retriever it lost to (the evaluation summary's ``best_retriever``)."""
    from airflow.sdk.exceptions import AirflowFailException

    from orchestration import release_tasks

    metrics = {"recall@100": 0.5, "ndcg@10": 0.3, "ranker_auc": 0.7, "collaborative_recall@100": 0.99,
               "content_recall@100": 0.99, "collaborative_ndcg@10": 0.041, "content_ndcg@10": 0.093,
               "popularity_ndcg@10": 0.093, "best_retriever_ndcg@10": 0.093, "ranked_ndcg@10": 0.036}
    staging = registry.stage("retail", "20240312")
    (staging / "model.bin").write_bytes(b"weights")
    registry.finalize("retail", "20240312", training_window=tuple(WINDOW), metrics=metrics,
                      extra={"summaries": {"evaluation": {**metrics, "best_retriever": "content"}}})
    evaluation = evaluate("retail", "20240312", "2024-03-12", WINDOW)
    assert evaluation["metrics"] == {**metrics, "best_retriever": "content"}
    monkeypatch.setattr(release_tasks, "serving_load_problems", lambda domain, version: [])
    with pytest.raises(AirflowFailException) as refused:
        promotion_gate("retail", evaluation)
    message = str(refused.value)
    assert "ranked_ndcg@10: the ranked order (NDCG@10 0.036) scores below its best retriever content (0.093)" in message
    assert message.count("FAIL") == 1  # every other rule passes (no live release: the floors only)
    assert registry.current("retail") is None
    promoted = promotion_gate("retail", {**evaluation, "metrics": {**evaluation["metrics"], "ranked_ndcg@10": 0.1}})
    assert promoted["promote"] is True
