"""Release versions per logical date, retry-safe staging, publish and the training jobs' arguments."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from common.paths import DataPaths
from common.registry import ArtifactRegistry, PromotionRefused
from orchestration.release_tasks import publish, training_args
from orchestration.staging import ClearStagedPart, claim_version, clear_staged_part

DAY = date(2024, 3, 12)


@pytest.fixture
def registry(data_paths: DataPaths) -> ArtifactRegistry:
    return ArtifactRegistry()  # under the test's RECSYS_ARTIFACTS_DIR


def _finalize(registry: ArtifactRegistry, version: str) -> None:
    staging = registry.staging_path("retail", version)
    if not staging.is_dir():
        registry.stage("retail", version)
    (staging / "model.bin").write_bytes(b"weights")
    registry.finalize("retail", version, training_window=("2024-03-05", "2024-03-11"), metrics={"auc": 0.7})


def test_versions_follow_the_logical_date_and_skip_finalized_ones(registry: ArtifactRegistry) -> None:
    version, staging = claim_version(registry, "retail", DAY)
    assert version == "20240312" and staging == registry.staging_path("retail", "20240312") and staging.is_dir()
    # an interrupted attempt: the same staging directory is handed out again
    assert claim_version(registry, "retail", DAY) == (version, staging)
    _finalize(registry, "20240312")
    assert claim_version(registry, "retail", DAY)[0] == "20240312.2"
    _finalize(registry, "20240312.2")
    assert claim_version(registry, "retail", DAY)[0] == "20240312.3"
    assert claim_version(registry, "banking", DAY)[0] == "20240312"


def test_a_training_task_clears_only_its_own_part(registry: ArtifactRegistry) -> None:
    version, staging = claim_version(registry, "retail", DAY)
    for name in ("ranker/fast/weights.npz", "logs/ranker/events", "summary/ranker.json",
                 "retrieval/retrieval.json", "logs/retrieval/events", "summary/retrieval.json", "catalog.parquet"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text("x")
    hook = ClearStagedPart("ranker")
    task = SimpleNamespace(application_args=["--domain", "retail", "--date", "2024-03-11", "--release", version])
    hook({"task": task})
    left = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert left == ["catalog.parquet", "logs/retrieval/events", "retrieval/retrieval.json", "summary/retrieval.json"]
    assert clear_staged_part(registry, "retail", version, "ranker") == []  # nothing left to clear


def test_publish_switches_current_and_is_idempotent(registry: ArtifactRegistry) -> None:
    _finalize(registry, "20240311")
    _finalize(registry, "20240312")
    assert publish("retail", "20240311") == {"version": "20240311", "previous": None}
    assert publish("retail", "20240312") == {"version": "20240312", "previous": "20240311"}
    assert publish("retail", "20240312") == {"version": "20240312", "previous": "20240312"}
    assert registry.current("retail") == "20240312"
    assert [h["version"] for h in registry.history("retail")] == ["20240311", "20240312"]


def test_publish_refuses_a_tampered_release_and_keeps_current(registry: ArtifactRegistry) -> None:
    _finalize(registry, "20240311")
    _finalize(registry, "20240312")
    publish("retail", "20240311")
    Path(registry.release_path("retail", "20240312") / "model.bin").write_bytes(b"Weights")
    with pytest.raises(PromotionRefused, match="checksum mismatch"):
        publish("retail", "20240312")
    assert registry.current("retail") == "20240311"


def test_training_args_cover_the_window() -> None:
    assert training_args("retail", "20240312", ["2024-03-05", "2024-03-11"]) == [
        "--domain", "retail", "--date", "2024-03-11", "--days", "7", "--release", "20240312"]
