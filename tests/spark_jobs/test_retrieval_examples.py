"""Spark's retrieval examples and popularity scores equal the pandas ones they replace on the nightly path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.retrieval.examples import EXAMPLE_COLUMNS, RetrievalExamples
from models.retrieval.popularity import PopularityConfig, PopularityTable, decayed_scores
from spark_jobs.retrieval_examples import popularity_scores, retrieval_examples, write_examples


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    """40 users, repeats and re-visits included, on 30 items of which 25 are in the catalog."""
    rng = np.random.default_rng(3)
    rows = 600
    start = pd.Timestamp("2025-03-01", tz="UTC")
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in rng.integers(0, 40, rows)],
        "item_id": [f"i{i}" for i in rng.integers(0, 30, rows)],
        "timestamp": start + pd.to_timedelta(rng.permutation(rows) * 1_000, unit="s"),  # no ties
        "event_type": "view",
        "weight": rng.choice([1.0, 2.0, 4.0], rows),
    })


CATALOG = [f"i{i}" for i in range(25)]


def _rows(batches) -> list[tuple]:  # noqa: ANN001
    return sorted((u, i, float(w), tuple(h)) for b in batches
                  for u, i, w, h in zip(b["user_id"], b["item_id"], b["weight"], b["history"].tolist(), strict=True))


def test_spark_examples_equal_the_pandas_ones(spark, interactions: pd.DataFrame, tmp_path: Path) -> None:
    catalog = spark.createDataFrame(pd.DataFrame({"item_id": CATALOG}))
    frame = retrieval_examples(spark.createDataFrame(interactions), catalog, history_length=5, lookback=1_000)
    assert tuple(frame.columns) == EXAMPLE_COLUMNS
    written = write_examples(frame, tmp_path / "examples", seed=1, rows_per_shard=200)
    from_spark = RetrievalExamples.from_shards(tmp_path / "examples")
    expected = RetrievalExamples.from_interactions(interactions, CATALOG, history_length=5)
    assert written.rows == from_spark.rows == expected.rows == int(interactions["item_id"].isin(CATALOG).sum())
    assert len(from_spark.source) >= 3  # about one shard per 200 rows
    assert _rows(from_spark.batches(64, 5, seed=0)) == _rows(expected.batches(64, 5))
    users = [b["user_id"][:20].tolist() for b in from_spark.batches(600, 5)]
    assert users != sorted(users)  # the shards hold rows in random order, not user by user


def test_the_default_lookback_keeps_every_history_of_a_window(spark, interactions: pd.DataFrame) -> None:
    catalog = spark.createDataFrame(pd.DataFrame({"item_id": CATALOG}))
    got = retrieval_examples(spark.createDataFrame(interactions), catalog, history_length=5).toPandas()
    expected = RetrievalExamples.from_interactions(interactions, CATALOG, history_length=5)
    assert sorted(map(tuple, got["history"].map(tuple))) == sorted(
        tuple(h) for b in expected.batches(1_000, 5) for h in (tuple(x for x in row if x) for row in b["history"]))


def test_spark_popularity_equals_pandas(spark, interactions: pd.DataFrame) -> None:
    config = PopularityConfig(window_days=0.3, half_life_days=0.1, top_n=10)
    as_of = pd.Timestamp("2025-03-07 12:00", tz="UTC")  # some interactions are later: they must not count
    segments = {f"u{u}": f"s{u % 3}" for u in range(30)}  # ten users without a segment
    spark_segments = spark.createDataFrame(pd.DataFrame({"user_id": list(segments), "segment": list(segments.values())}))
    got = popularity_scores(spark.createDataFrame(interactions), spark_segments, as_of, config)
    expected = decayed_scores(interactions, as_of, config, segments)
    merged = expected.merge(got, on=["segment", "item_id"], how="outer", suffixes=("_pandas", "_spark"))
    assert len(merged) == len(expected) == len(got) > 10
    np.testing.assert_allclose(merged["score_spark"], merged["score_pandas"], rtol=1e-9)
    table, reference = (PopularityTable.from_scores(got, as_of, config),
                        PopularityTable.build(interactions, as_of, config, segments))
    assert all(table.top(s, 10)[0] == reference.top(s, 10)[0] for s in reference.segments)
