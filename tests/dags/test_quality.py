"""Data-quality checks: each rule on hand-built figures, and the figures gathered from a small lake."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.paths import DataPaths
from orchestration.quality import PARTITION_SCHEMA, DayStats, check_domain, day_stats, evaluate_quality
from orchestration.settings import QualityRules

DAY = date(2024, 3, 12)
RULES = QualityRules(min_rows=4, max_rejected_rate=0.2, max_unknown_item_rate=0.2, min_history_days=2,
                     volume_lookback_days=3)
POSITIVES = {"click": 1.0, "purchase": 4.0}


def _good() -> DayStats:
    return DayStats(
        day=DAY, rows=10, schema=PARTITION_SCHEMA,
        null_counts={"event_id": 0, "user_id": 0, "item_id": 0, "event_type": 0, "timestamp": 0,
                     "request_id": 0, "position": 0},
        distinct_event_ids=10, newest_event=datetime(2024, 3, 12, 22, 0, tzinfo=UTC),
        event_types={"impression": 6, "click": 3, "purchase": 1}, unknown_items=1, rejected=2,
        history_rows=[8, 12, 10],
    )


def _failed(stats: DayStats, rules: QualityRules = RULES) -> set[str]:
    return {c.name for c in evaluate_quality("retail", stats, rules, POSITIVES).failures}


def test_a_good_day_passes_every_check() -> None:
    report = evaluate_quality("retail", _good(), RULES, POSITIVES)
    assert report.ok, report.summary()
    assert len(report.checks) == 9


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"rows": 3, "distinct_event_ids": 3, "history_rows": [], "rejected": 0, "unknown_items": 0}, {"rows"}),
        ({"distinct_event_ids": 9}, {"duplicates"}),
        # 2 h late is fine (max 6 h); 7 h is stale; an event after midnight belongs to another day
        ({"newest_event": datetime(2024, 3, 12, 16, 59, tzinfo=UTC)}, {"freshness"}),
        ({"newest_event": datetime(2024, 3, 13, 0, 30, tzinfo=UTC)}, {"freshness"}),
        ({"newest_event": None}, {"freshness"}),
        # median of [8, 12, 10] is 10: 21 rows = 2.1x (> 2.0), 4 rows = 0.4x (< 0.5)
        ({"rows": 21, "distinct_event_ids": 21}, {"volume"}),
        ({"rows": 4, "distinct_event_ids": 4, "rejected": 0, "unknown_items": 0}, {"volume"}),
        # 3 rejected of 10 kept: 3/13 = 23% > 20%
        ({"rejected": 3}, {"rejected"}),
        ({"unknown_items": 3}, {"unknown_items"}),
        ({"null_counts": {**_good().null_counts, "user_id": 1}}, {"nulls"}),
        ({"null_counts": {**_good().null_counts, "position": 1}}, {"nulls"}),
        ({"event_types": {"impression": 10}}, {"event_mix"}),
        ({"event_types": {"click": 9, "purchase": 1}}, {"event_mix"}),
        ({"schema": PARTITION_SCHEMA.remove(PARTITION_SCHEMA.get_field_index("user_id"))}, {"schema"}),
        ({"schema": PARTITION_SCHEMA.set(PARTITION_SCHEMA.get_field_index("position"),
                                                pa.field("position", pa.string()))}, {"schema"}),
        ({"schema": PARTITION_SCHEMA.append(pa.field("surprise", pa.int64()))}, {"schema"}),
    ],
)
def test_each_rule_fails_on_its_own_problem(change: dict, failing: set[str]) -> None:
    assert _failed(replace(_good(), **change)) == failing


def test_boundaries_are_inclusive() -> None:
    # exactly 2.0x and 0.5x the median, exactly 6 h stale, exactly 20% rejected and unknown
    assert _failed(replace(_good(), rows=20, distinct_event_ids=20, rejected=5, unknown_items=4)) == set()
    assert _failed(replace(_good(), rows=5, distinct_event_ids=5, rejected=1, unknown_items=1)) == set()
    assert _failed(replace(_good(), newest_event=datetime(2024, 3, 12, 18, 0, tzinfo=UTC))) == set()


def test_volume_is_skipped_without_enough_history() -> None:
    report = evaluate_quality("retail", replace(_good(), rows=100, distinct_event_ids=100, history_rows=[10]),
                              RULES, POSITIVES)
    volume = next(c for c in report.checks if c.name == "volume")
    assert volume.ok and volume.detail.startswith("skipped")


def test_a_missing_partition_fails() -> None:
    stats = DayStats(DAY, 0, None, {}, 0, None, {}, 0, 0, [10, 10])
    assert _failed(stats) == {"rows", "schema", "freshness", "volume", "event_mix"}


# ---- figures gathered from a lake on disk ------------------------------------------------------


def _events(day: date, n: int, unknown: int = 0, null_users: int = 0) -> pa.Table:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = []
    for i in range(n):
        kind = "impression" if i % 2 == 0 else "click"
        rows.append({
            "event_id": f"{day}-{i}", "user_id": None if i < null_users else f"r_u{i % 3}",
            "item_id": f"r_x{i}" if i < unknown else f"r_i{i % 4}", "event_type": kind,
            "timestamp": start + timedelta(hours=23 * i / max(n - 1, 1)),
            "request_id": f"q{i}" if kind == "impression" else None, "position": i if kind == "impression" else None,
        })
    return pa.Table.from_pylist(rows, schema=PARTITION_SCHEMA)


def _write_day(paths: DataPaths, day: date, table: pa.Table, domain: str = "retail") -> None:
    directory = paths.compacted_events / f"domain={domain}" / f"date={day.isoformat()}"
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "part-00000.parquet")


@pytest.fixture
def lake(data_paths: DataPaths) -> DataPaths:
    for back, n in ((1, 10), (2, 12), (4, 8)):  # day-3 is missing
        _write_day(data_paths, DAY - timedelta(days=back), _events(DAY - timedelta(days=back), n))
    data_paths.catalog("retail").parent.mkdir(parents=True)
    pq.write_table(pa.table({"item_id": [f"r_i{i}" for i in range(4)]}), data_paths.catalog("retail"))
    dead = data_paths.dead_letter("compaction") / f"date={DAY.isoformat()}" / "compaction.jsonl"
    dead.parent.mkdir(parents=True)
    lines = [{"reason": {"code": "wrong_type"}, "record": {"domain": d, "event_id": f"bad{i}"}}
             for i, d in enumerate(["retail", "retail", "banking"])]
    lines.append({"reason": {"code": "malformed_json"}, "record": "{not json"})
    dead.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return data_paths


def test_day_stats_reads_the_partition_dead_letters_history_and_catalog(lake: DataPaths) -> None:
    _write_day(lake, DAY, _events(DAY, 11, unknown=2, null_users=1))
    stats = day_stats(lake, "retail", DAY, RULES)
    assert stats.rows == 11 and stats.distinct_event_ids == 11
    assert stats.history_rows == [10, 12]  # newest first, the missing day skipped, day-4 beyond the lookback
    assert stats.rejected == 2  # banking's and the unparseable line are not retail's
    assert stats.unknown_items == 2
    assert stats.null_counts["user_id"] == 1 and stats.null_counts["request_id"] == 0
    assert stats.event_types == {"impression": 6, "click": 5}
    assert stats.newest_event == datetime(2024, 3, 12, 23, 0, tzinfo=UTC)
    assert stats.schema is not None and stats.schema.equals(PARTITION_SCHEMA)
    assert _failed(stats) == {"nulls"}  # 2/11 unknown = 18% and 2/13 rejected = 15% are under 20%


def test_account_events_are_not_events_on_unknown_items(data_paths: DataPaths) -> None:
    """Banking's card payments, salary credits and transfers name counterparties, never catalog items."""
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    rows = [{"event_id": f"a{i}", "user_id": "b_u1", "item_id": item, "event_type": kind,
             "timestamp": start + timedelta(hours=i)}
            for i, (item, kind) in enumerate([("b_mcc_travel", "card_spend"), ("b_acct_salary", "salary_credit"),
                                              ("b_xfer_out", "transfer"), ("b_p1", "view"), ("b_p9", "view")])]
    _write_day(data_paths, DAY, pa.Table.from_pylist(rows, schema=PARTITION_SCHEMA), "banking")
    data_paths.catalog("banking").parent.mkdir(parents=True)
    pq.write_table(pa.table({"item_id": ["b_p1"]}), data_paths.catalog("banking"))
    assert day_stats(data_paths, "banking", DAY, RULES).unknown_items == 1  # b_p9 only


def test_check_domain_on_a_missing_day(lake: DataPaths) -> None:
    report = check_domain(lake, "retail", DAY, RULES, POSITIVES)
    assert not report.ok and report.rows == 0
    assert "no compacted partition" in report.summary()
