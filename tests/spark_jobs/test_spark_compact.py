"""Compaction: validation with the shared rules, dead-lettering, dedupe, idempotent partition rewrite."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.deadletter import read_dead_letters
from common.lake import write_events
from spark_jobs.compact import compact, deduplicate, main

D1 = date(2025, 3, 10)
T = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def _event(event_id: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": event_id, "domain": "retail", "user_id": "r_u1", "item_id": "r_i1",
        "event_type": "view", "timestamp": T, "session_id": "s1", "device": "web",
    }
    return {**base, **overrides}


@pytest.fixture
def lake(data_paths):
    events = pd.DataFrame(
        [
            _event("e1"),
            _event("e2", event_type="impression", request_id="q1", position=1),
            _event("e2", event_type="impression", request_id="q1", position=1),  # a retried delivery
            _event("e3", event_type="impression", request_id="q1"),  # no position
            _event("e4", user_id="b_u9"),  # banking id in retail
            _event("e5", domain="banking", user_id="b_u1", item_id="b_i1", event_type="purchase"),
            _event("e6", event_type="purchase", value=-3.0),
            _event("e7", ingested_at=datetime(2025, 3, 8, tzinfo=UTC)),  # 2.5 days before its own time
            _event("e8", timestamp=datetime(2025, 3, 11, 9, tzinfo=UTC)),  # the next day's partition
        ]
    )
    write_events(events, data_paths)
    return data_paths


def _compacted(paths) -> pd.DataFrame:
    return pq.read_table(paths.compacted_events).to_pandas().sort_values("event_id").reset_index(drop=True)


def test_compaction_validates_dedupes_and_dead_letters(tiny_spark, lake):
    report = compact(tiny_spark, lake, D1, D1)

    assert report.rows_in == 8
    assert report.duplicates == 1
    assert report.rejected == {
        "missing_field": 1, "wrong_id_prefix": 1, "event_type_not_allowed_for_domain": 1,
        "negative_value": 1, "timestamp_in_future": 1,
    }
    assert report.written == {("retail", "2025-03-10"): 2}
    out = _compacted(lake)
    assert out["event_id"].tolist() == ["e1", "e2"]
    assert out["position"].tolist()[1] == 1 and str(out["domain"].iloc[0]) == "retail"
    assert not (lake.compacted_events / "domain=retail" / "date=2025-03-11").exists()

    lines = sorted(read_dead_letters(lake, "compaction"), key=lambda d: d["record"]["event_id"])
    assert [d["record"]["event_id"] for d in lines] == ["e3", "e4", "e5", "e6", "e7"]
    first = lines[0]
    assert first["source"] == "compaction"
    assert first["reason"] == {"code": "missing_field", "field": "position", "detail": "an impression needs 'position'"}
    assert first["record"]["timestamp"] == "2025-03-10T12:00:00.000000Z" and "value" not in first["record"]
    assert set(first) == {"source", "rejected_at", "reason", "record"}
    assert (lake.dead_letter("compaction") / "date=2025-03-10" / "compaction.jsonl").exists()


def test_compaction_is_idempotent_and_leaves_other_dates_alone(tiny_spark, lake):
    assert main(["--date", "2025-03-11", "--data-dir", str(lake.root)]) == 0
    compact(tiny_spark, lake, D1, D1)
    before = _compacted(lake)
    report = compact(tiny_spark, lake, D1, D1)

    after = _compacted(lake)
    pd.testing.assert_frame_equal(before, after)
    assert after["event_id"].tolist() == ["e1", "e2", "e8"]
    assert report.written == {("retail", "2025-03-10"): 2}
    assert len(list(read_dead_letters(lake, "compaction"))) == 5


def test_all_rejected_partition_removes_stale_output(tiny_spark, lake):
    compact(tiny_spark, lake, D1, D1)
    write_events(pd.DataFrame([_event("bad", user_id="b_x")]), lake)  # replaces the 2025-03-10 partition
    report = compact(tiny_spark, lake, D1, D1)
    assert report.written == {}
    assert not (lake.compacted_events / "domain=retail" / "date=2025-03-10").exists()


def test_deduplicate_keeps_the_earliest(tiny_spark):
    rows = [
        ("a", datetime(2025, 1, 1, 10, tzinfo=UTC), "late"),
        ("a", datetime(2025, 1, 1, 9, tzinfo=UTC), "early"),
        ("b", datetime(2025, 1, 1, 9, tzinfo=UTC), "only"),
    ]
    frame = tiny_spark.createDataFrame(rows, "event_id string, timestamp timestamp, note string")
    frame = frame.withColumn("ingested_at", frame["timestamp"])
    kept = {r["event_id"]: r["note"] for r in deduplicate(frame).collect()}
    assert kept == {"a": "early", "b": "only"}
