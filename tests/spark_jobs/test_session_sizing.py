"""Spark's shuffle partitions follow the input's size unless a deployment fixes them (spark_jobs/session.py)."""

from __future__ import annotations

from spark_jobs.session import (
    BYTES_PER_PARTITION,
    MAX_PARTITIONS,
    MIN_PARTITIONS,
    input_bytes,
    shuffle_partitions_for,
)


def test_partitions_grow_with_the_input_between_the_bounds(monkeypatch) -> None:
    monkeypatch.delenv("RECSYS_SPARK_SHUFFLE_PARTITIONS", raising=False)
    assert shuffle_partitions_for(0) == MIN_PARTITIONS
    assert shuffle_partitions_for(100 * BYTES_PER_PARTITION + 1) == 101
    assert shuffle_partitions_for(10**15) == MAX_PARTITIONS
    monkeypatch.setenv("RECSYS_SPARK_SHUFFLE_PARTITIONS", "3")
    assert shuffle_partitions_for(10**15) == 3


def test_input_bytes_sums_the_files_under_each_path(tmp_path) -> None:
    (tmp_path / "a" / "date=1").mkdir(parents=True)
    (tmp_path / "a" / "date=1" / "part.parquet").write_bytes(b"x" * 10)
    (tmp_path / "b.parquet").write_bytes(b"y" * 5)
    assert input_bytes([tmp_path / "a", tmp_path / "b.parquet", tmp_path / "missing"]) == 15
