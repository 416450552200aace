"""Spark writes the ranker's shards without collecting them (spark_jobs/ranker_shards.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from common.errors import DataError
from models.ranking.shards import TRAIN, VALID, ShardSet
from spark_jobs.ranker_shards import write_ranking_shards


def _impressions(rows: int) -> pd.DataFrame:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return pd.DataFrame({
        "request_id": [f"q{i // 5}" for i in range(rows)],
        "event_timestamp": [start + timedelta(minutes=i) for i in range(rows)],
        "ctr_7d": [None if i % 7 == 0 else i / rows for i in range(rows)],
        "category": [None if i % 4 == 0 else f"c{i % 3}" for i in range(rows)],
        "position": [None if i % 9 == 0 else 1 + i % 5 for i in range(rows)],
        "clicked": [int(i % 3 == 0) for i in range(rows)],
    })


def test_the_latest_rows_validate_and_every_row_is_written_once_typed(spark, tmp_path) -> None:
    frame = spark.createDataFrame(_impressions(200))
    made = write_ranking_shards(frame, tmp_path / "shards", ["ctr_7d"], ["category"], position=True,
                                valid_fraction=0.2, seed=1, min_shards=3, rows_per_shard=1_000)
    assert made.rows[TRAIN] + made.rows[VALID] == 200 and 30 <= made.rows[VALID] <= 50
    assert made.positives[TRAIN] + made.positives[VALID] == 67
    assert len(made.files(TRAIN)) == 3  # at least one per trainer worker
    assert ShardSet.load(tmp_path / "shards").rows == made.rows
    train = pd.concat([pd.read_parquet(f) for f in made.files(TRAIN)])
    valid = pd.concat([pd.read_parquet(f) for f in made.files(VALID)])
    assert sorted(train.columns) == ["category", "clicked", "ctr_7d", "position"]
    assert str(train["ctr_7d"].dtype) == "float32" and train["ctr_7d"].isna().sum() > 0
    categories = pd.concat([train["category"], valid["category"]])
    assert (categories == "").sum() == 50 and not categories.isna().any()  # strings, null -> ""
    assert str(train["position"].dtype) == "int32"
    assert (train["position"] == 0).sum() + (valid["position"] == 0).sum() == 23  # unknown slot: 0
    # the validation side is the window's end: its smallest ctr_7d (= i / 200) is above every training one
    assert valid["ctr_7d"].min() > train["ctr_7d"].max()


def test_labels_that_are_not_0_or_1_are_a_data_error(spark, tmp_path) -> None:
    frame = spark.createDataFrame(_impressions(40).assign(clicked=[2] + [0] * 39))
    with pytest.raises(DataError, match="not 0/1"):
        write_ranking_shards(frame, tmp_path / "shards", ["ctr_7d"], [], position=False, valid_fraction=0.2)


def test_a_window_of_one_moment_is_split_by_request(spark, tmp_path) -> None:
    frame = spark.createDataFrame(_impressions(100).assign(event_timestamp=datetime(2025, 3, 1, tzinfo=UTC)))
    made = write_ranking_shards(frame, tmp_path / "shards", ["ctr_7d"], [], position=False, valid_fraction=0.3,
                                seed=2)
    assert made.rows[TRAIN] and made.rows[VALID] and made.rows[TRAIN] + made.rows[VALID] == 100
    valid = pd.concat([pd.read_parquet(f) for f in made.files(VALID)])
    assert len(valid) % 5 == 0  # whole requests (5 rows each)
