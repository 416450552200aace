"""The lake writer/reader and the dead-letter store (common/lake.py, common/deadletter.py)."""

from __future__ import annotations

import pandas as pd

from common.deadletter import DeadLetterWriter, read_dead_letters
from common.lake import event_partitions, read_events, write_events
from common.schemas import Reason, Rejection


def _events(ids: list[str], days: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": ids,
            "domain": "retail",
            "user_id": "r_u1",
            "item_id": "r_i1",
            "event_type": "view",
            "timestamp": pd.to_datetime([f"{d}T10:00:00Z" for d in days]),
        }
    )


def test_events_partitioned_by_date_and_rewrite_is_idempotent(data_paths):
    frame = _events(["a", "b", "c"], ["2026-10-01", "2026-10-01", "2026-10-02"])
    assert write_events(frame, data_paths) == 3
    assert write_events(frame, data_paths) == 3  # same partitions replaced, not duplicated
    assert list(event_partitions(data_paths, "retail")) == ["2026-10-01", "2026-10-02"]
    back = read_events(data_paths, "retail")
    assert sorted(back.event_id) == ["a", "b", "c"]
    assert (back.domain == "retail").all()
    assert back.position.isna().all()  # optional contract columns exist, null


def test_read_events_pushes_the_event_type_and_date_filters_down(data_paths):
    frame = _events(["a", "b", "c"], ["2026-10-01", "2026-10-02", "2026-10-03"]).assign(
        event_type=["view", "purchase", "view"])
    write_events(frame, data_paths)
    views = read_events(data_paths, "retail", ["event_id", "event_type"], event_types=["view"])
    assert sorted(views.event_id) == ["a", "c"] and list(views.columns) == ["event_id", "event_type"]
    recent = read_events(data_paths, "retail", ["event_id"], since="2026-10-02")
    assert sorted(recent.event_id) == ["b", "c"]
    assert read_events(data_paths, "retail", ["event_id"], ["view"], "2026-10-02").event_id.tolist() == ["c"]
    assert list(read_events(data_paths, "banking", ["event_id"]).columns) == ["event_id"]


def test_read_events_reads_only_the_users_and_days_asked_for(data_paths):
    frame = _events(["a", "b", "c", "d"], ["2026-10-01", "2026-10-02", "2026-10-02", "2026-10-03"]).assign(
        user_id=["r_u1", "r_u1", "r_u2", "r_u1"])
    write_events(frame, data_paths)
    assert sorted(read_events(data_paths, "retail", ["event_id"], users=["r_u1", "r_u9"]).event_id) == ["a", "b", "d"]
    assert sorted(read_events(data_paths, "retail", ["event_id"], until="2026-10-03").event_id) == ["a", "b", "c"]
    window = read_events(data_paths, "retail", ["event_id"], since="2026-10-02", until="2026-10-03", users=["r_u2"])
    assert window.event_id.tolist() == ["c"]
    assert read_events(data_paths, "retail", ["event_id"], users=[]).empty


def test_append_mode_keeps_existing_files(data_paths):
    write_events(_events(["a"], ["2026-10-01"]), data_paths, basename="batch1-{i}", replace_partitions=False)
    write_events(_events(["b"], ["2026-10-01"]), data_paths, basename="batch2-{i}", replace_partitions=False)
    assert sorted(read_events(data_paths, "retail").event_id) == ["a", "b"]


def test_dead_letters_keep_raw_record_and_reason(data_paths):
    writer = DeadLetterWriter(data_paths, "unit")
    writer.write(b"{not json", Rejection(Reason.MALFORMED_JSON, None, "bad"))
    writer.write({"event_id": "x"}, Rejection(Reason.MISSING_FIELD, "domain", "missing"))
    rows = list(read_dead_letters(data_paths, "unit"))
    assert [r["reason"]["code"] for r in rows] == ["malformed_json", "missing_field"]
    assert rows[0]["record"] == "{not json"
    assert rows[1]["record"] == {"event_id": "x"}
    assert writer.counts == {"malformed_json": 1, "missing_field": 1}


def test_dead_letters_keep_records_orjson_cannot_encode(data_paths):
    writer = DeadLetterWriter(data_paths, "unit")
    writer.write({"position": 2**70}, Rejection(Reason.WRONG_TYPE, "position", "too big"))
    (row,) = read_dead_letters(data_paths, "unit")
    assert row["record"] == {"position": str(2**70)}  # exact, as text (JSON readers would round it)


def test_data_paths_take_a_string_root_and_refuse_a_non_path(tmp_path) -> None:
    import pytest

    from common.paths import DataPaths

    assert DataPaths(str(tmp_path)).lake == tmp_path / "lake" == DataPaths(tmp_path).lake
    with pytest.raises(TypeError, match="takes a path"):
        DataPaths(None)  # type: ignore[arg-type]
