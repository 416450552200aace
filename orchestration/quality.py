"""Data-quality checks of one domain's compacted events for one logical day.

The checks are pure functions of :class:`DayStats` (the figures of the day, gathered once by
:func:`day_stats` from the compacted lake, the compaction dead letters and the catalog), so each rule
is tested on hand-built numbers. :func:`evaluate_quality` runs every check and returns a
:class:`QualityReport`; the nightly DAG fails the run when the report is not ``ok``.

Checks: the partition exists with enough rows; its schema is the event contract; no nulls in the
required fields; no duplicate ``event_id``; the newest event is close to the end of the day
(freshness); the volume is within a ratio of the median of the previous days; the share of events
dead-lettered by compaction and of events on unknown items is small; the events training needs are
present (impressions and at least one positive event).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from common.domains import domain as domain_config
from common.lake_schemas import EVENT_ARROW_SCHEMA
from common.paths import DataPaths
from orchestration.settings import QualityRules

REQUIRED_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "timestamp")
IMPRESSION_COLUMNS = ("request_id", "position")
DEAD_LETTER_SOURCE = "compaction"  # spark_jobs.compact files its rejections under this source
PARTITION_SCHEMA = pa.schema([f for f in EVENT_ARROW_SCHEMA if f.name != "domain"])  # domain is in the path


@dataclass(frozen=True)
class DayStats:
    """What the checks need to know about one domain's day."""

    day: date
    rows: int
    schema: pa.Schema | None  # None: the compacted partition does not exist
    null_counts: Mapping[str, int]  # required columns over all rows, impression columns over impressions
    distinct_event_ids: int
    newest_event: datetime | None
    event_types: Mapping[str, int]
    unknown_items: int
    rejected: int  # dead-lettered by compaction
    history_rows: Sequence[int]  # rows of each previous compacted day that exists, newest first


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class QualityReport:
    domain: str
    day: date
    rows: int
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        head = f"data quality {self.domain} {self.day}: {'OK' if self.ok else 'FAILED'} ({self.rows} rows)"
        return "\n".join([head, *(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks)])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "ok": self.ok}


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def check_rows(stats: DayStats, rules: QualityRules) -> Check:
    if stats.schema is None:
        return Check("rows", False, f"no compacted partition for {stats.day}")
    return Check("rows", stats.rows >= rules.min_rows, f"{stats.rows} rows (minimum {rules.min_rows})")


def check_schema(stats: DayStats) -> Check:
    if stats.schema is None:
        return Check("schema", False, "no partition to check")
    problems = []
    for wanted in PARTITION_SCHEMA:
        index = stats.schema.get_field_index(wanted.name)
        if index < 0:
            problems.append(f"missing {wanted.name}")
        elif not stats.schema.field(index).type.equals(wanted.type):
            problems.append(f"{wanted.name} is {stats.schema.field(index).type}, expected {wanted.type}")
    extra = sorted(set(stats.schema.names) - set(PARTITION_SCHEMA.names))
    problems += [f"unexpected column {name}" for name in extra]
    return Check("schema", not problems, "; ".join(problems) or "matches the event contract")


def check_nulls(stats: DayStats, rules: QualityRules) -> Check:
    impressions = stats.event_types.get("impression", 0)
    bad = {}
    for column, nulls in stats.null_counts.items():
        whole = impressions if column in IMPRESSION_COLUMNS else stats.rows
        if _rate(nulls, whole) > rules.max_null_rate:
            bad[column] = nulls
    detail = ", ".join(f"{c}: {n} nulls" for c, n in sorted(bad.items()))
    return Check("nulls", not bad, detail or f"null rate <= {rules.max_null_rate:g} in every required field")


def check_duplicates(stats: DayStats) -> Check:
    duplicates = stats.rows - stats.distinct_event_ids
    return Check("duplicates", duplicates == 0, f"{duplicates} duplicate event_id(s)")


def check_freshness(stats: DayStats, rules: QualityRules) -> Check:
    if stats.newest_event is None:
        return Check("freshness", False, "no events")
    day_end = datetime(stats.day.year, stats.day.month, stats.day.day, tzinfo=UTC) + timedelta(days=1)
    lag_hours = (day_end - stats.newest_event).total_seconds() / 3600
    ok = 0 <= lag_hours <= rules.max_staleness_hours
    return Check(
        "freshness", ok,
        f"newest event {stats.newest_event.isoformat()} is {lag_hours:.1f} h before the end of the day "
        f"(maximum {rules.max_staleness_hours:g} h)",
    )


def check_volume(stats: DayStats, rules: QualityRules) -> Check:
    history = list(stats.history_rows)
    if len(history) < rules.min_history_days:
        return Check("volume", True, f"skipped: {len(history)} previous day(s), need {rules.min_history_days}")
    median = statistics.median(history)
    ratio = stats.rows / median if median else float("inf")
    ok = rules.min_volume_ratio <= ratio <= rules.max_volume_ratio
    return Check(
        "volume", ok,
        f"{stats.rows} rows = {ratio:.2f} x the median {median:g} of {len(history)} previous day(s) "
        f"(allowed {rules.min_volume_ratio:g}..{rules.max_volume_ratio:g})",
    )


def check_rejected(stats: DayStats, rules: QualityRules) -> Check:
    rate = _rate(stats.rejected, stats.rows + stats.rejected)
    return Check(
        "rejected", rate <= rules.max_rejected_rate,
        f"{stats.rejected} dead-lettered = {rate:.2%} of the day's events (maximum {rules.max_rejected_rate:.2%})",
    )


def check_unknown_items(stats: DayStats, rules: QualityRules) -> Check:
    rate = _rate(stats.unknown_items, stats.rows)
    return Check(
        "unknown_items", rate <= rules.max_unknown_item_rate,
        f"{stats.unknown_items} events on items missing from the catalog (account events aside) = {rate:.2%} "
        f"(maximum {rules.max_unknown_item_rate:.2%})",
    )


def check_event_mix(stats: DayStats, rules: QualityRules, positive_events: Iterable[str]) -> Check:
    missing = [t for t in rules.required_event_types if not stats.event_types.get(t)]
    positives = sum(stats.event_types.get(t, 0) for t in positive_events)
    if not positives:
        missing.append("any positive event")
    counts = ", ".join(f"{t}={n}" for t, n in sorted(stats.event_types.items()))
    return Check("event_mix", not missing, (f"missing: {', '.join(missing)}; " if missing else "") + (counts or "none"))


def evaluate_quality(domain: str, stats: DayStats, rules: QualityRules, positive_events: Iterable[str]) -> QualityReport:
    """Every check on the day's figures."""
    checks = (
        check_rows(stats, rules),
        check_schema(stats),
        check_nulls(stats, rules),
        check_duplicates(stats),
        check_freshness(stats, rules),
        check_volume(stats, rules),
        check_rejected(stats, rules),
        check_unknown_items(stats, rules),
        check_event_mix(stats, rules, positive_events),
    )
    return QualityReport(domain, stats.day, stats.rows, checks)


# ---- gathering the figures from the lake -----------------------------------------------------


def _partition(paths: DataPaths, domain: str, day: date) -> ds.Dataset | None:
    directory = paths.compacted_events / f"domain={domain}" / f"date={day.isoformat()}"
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    return ds.dataset([str(f) for f in files], format="parquet") if files else None


def _rejected(paths: DataPaths, domain: str, day: date) -> int:
    directory = paths.dead_letter(DEAD_LETTER_SOURCE) / f"date={day.isoformat()}"
    count = 0
    for file in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        with file.open("rb") as fh:
            for line in fh:
                record = orjson.loads(line).get("record") if line.strip() else None
                count += int(isinstance(record, dict) and record.get("domain") == domain)
    return count


def _history(paths: DataPaths, domain: str, day: date, lookback: int) -> list[int]:
    counts = []
    for back in range(1, lookback + 1):
        dataset = _partition(paths, domain, day - timedelta(days=back))
        if dataset is not None:
            counts.append(dataset.count_rows())
    return counts


def _catalog_ids(paths: DataPaths, domain: str) -> pa.Array:
    path = paths.catalog(domain)
    if not path.is_file():
        return pa.array([], pa.string())
    return ds.dataset(str(path), format="parquet").to_table(columns=["item_id"])["item_id"].combine_chunks()


def day_stats(paths: DataPaths, domain: str, day: date, rules: QualityRules) -> DayStats:
    """Gather the day's figures (reads one compacted partition, row counts of the previous ones)."""
    history = _history(paths, domain, day, rules.volume_lookback_days)
    rejected = _rejected(paths, domain, day)
    dataset = _partition(paths, domain, day)
    if dataset is None:
        return DayStats(day, 0, None, {}, 0, None, {}, 0, rejected, history)
    columns = [c for c in (*REQUIRED_COLUMNS, *IMPRESSION_COLUMNS) if c in dataset.schema.names]
    table = dataset.to_table(columns=columns)
    nulls = {c: table[c].null_count for c in REQUIRED_COLUMNS if c in columns}
    if "event_type" in columns:
        impressions = table.filter(pc.equal(table["event_type"], "impression"))
        nulls.update({c: impressions[c].null_count for c in IMPRESSION_COLUMNS if c in columns})
        types = {str(v["values"]): int(v["counts"]) for v in pc.value_counts(table["event_type"]).to_pylist()}
    else:
        types = {}
    newest = pc.max(table["timestamp"]).as_py() if "timestamp" in columns and table.num_rows else None
    distinct = pc.count_distinct(table["event_id"]).as_py() if "event_id" in columns else 0
    unknown = 0
    if "item_id" in columns:
        unknown_item = pc.invert(pc.fill_null(pc.is_in(table["item_id"], value_set=_catalog_ids(paths, domain)), False))
        account = domain_config(domain).account_events  # their item_id is a counterparty, never in the catalog
        if account and "event_type" in columns:
            unknown_item = pc.and_(unknown_item, pc.invert(pc.is_in(table["event_type"], value_set=pa.array(account))))
        unknown = int(pc.sum(unknown_item).as_py() or 0)
    return DayStats(day, table.num_rows, dataset.schema, nulls, distinct, newest, types, unknown, rejected, history)


def check_domain(
    paths: DataPaths, domain: str, day: date, rules: QualityRules, positive_events: Iterable[str]
) -> QualityReport:
    """Gather the day's figures and run every check."""
    return evaluate_quality(domain, day_stats(paths, domain, day, rules), rules, positive_events)
