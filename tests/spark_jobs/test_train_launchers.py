"""The training launchers' Spark half on hand-built training sets (the TensorFlow half is covered by
``tests/models/test_release_e2e.py``, which runs both launchers end to end)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from common.paths import DataPaths
from spark_jobs import train_ranker, train_retrieval


def _row(n: int, domain: str, day: int, hour: int = 12) -> dict:
    return {"event_id": f"e{n}", "domain": domain, "user_id": f"{domain[0]}_u{n % 3}", "item_id": f"{domain[0]}_i{n}",
            "event_type": "view", "weight": 1.0, "timestamp": datetime(2025, 3, day, hour, tzinfo=UTC)}


def test_read_interactions_keeps_the_window_and_the_domain(spark, data_paths: DataPaths) -> None:
    rows = [_row(1, "retail", 3, 0), _row(2, "retail", 4), _row(3, "retail", 5, 23), _row(4, "retail", 6, 0),
            _row(5, "retail", 2, 23), _row(6, "banking", 4)]
    target = data_paths.training("retail", "retrieval")
    target.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(target / "part-0.parquet", index=False, coerce_timestamps="us")
    got = train_retrieval.read_interactions(spark, data_paths, "retail", date(2025, 3, 3), date(2025, 3, 5))
    # 03-03 00:00 and 03-05 23:00 are inside; 03-02 23:00 and 03-06 00:00 are not; banking never
    assert sorted(got["item_id"]) == ["r_i1", "r_i2", "r_i3"]
    assert list(got.columns) == train_retrieval.INTERACTION_COLUMNS
    assert str(got["timestamp"].dt.tz) == "UTC"
    assert got.set_index("item_id").loc["r_i3", "timestamp"] == pd.Timestamp("2025-03-05 23:00", tz="UTC")


def test_training_window_ends_with_the_logical_date() -> None:
    from models.release import training_window

    assert training_window(date(2025, 3, 10), 7) == (date(2025, 3, 4), date(2025, 3, 10))
    assert training_window(date(2025, 3, 10), 1) == (date(2025, 3, 10), date(2025, 3, 10))
    with pytest.raises(ValueError):
        training_window(date(2025, 3, 10), 0)


def test_ranker_launcher_refuses_a_missing_ranking_set_without_staging(data_paths: DataPaths, capsys) -> None:
    from common.registry import ArtifactRegistry

    argv = ["--domain", "retail", "--date", "2025-03-10", "--release", "v1", "--data-dir", str(data_paths.root)]
    with pytest.raises(SystemExit) as exit_info:
        train_ranker.main(argv)
    assert exit_info.value.code == 2
    assert "no ranking set" in capsys.readouterr().err
    assert not ArtifactRegistry().staging_path("retail", "v1").exists()


@pytest.mark.parametrize("launcher", [train_retrieval, train_ranker])
def test_launchers_document_their_arguments(launcher, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--domain", "--date", "--release", "--days", "--master", "--data-dir", "--epochs"):
        assert option in text
