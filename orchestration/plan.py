"""The night's plan: which dates each job covers, derived from the run's logical date and the lake.

Everything is keyed by the logical date ``D`` (the day whose data the night processes), never by the
wall clock, so a retry or a backfill of ``D`` does the same work:

- compaction: the last ``compact_lookback_days`` days up to ``D`` (late events land in recent
  partitions), extended back to the oldest raw partition that was never compacted or has changed
  since (the first night compacts the whole lake);
- training window: the ``training_days`` days before ``D`` (``D`` itself is left out: its
  conversions are only complete the next day), never before the lake's first day; ``training_days``
  None (or 0) is all history: the window starts on the lake's first day;
- batch features: snapshots from the day before the training window up to ``D``, so every training
  example finds the features as of its time and ``D``'s values reach the online store -- every day of
  a span of up to ``daily_days`` days, else every day of the last ``daily_days``, weekly back to a year
  and every 28 days beyond (:func:`spark_jobs.snapshots.snapshot_days`, always within the shortest
  feature TTL), so twenty years of history make ~300 snapshots, not ~7,300.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from common.paths import DataPaths
from spark_jobs.snapshots import DAILY_DAYS, snapshot_days


@dataclass(frozen=True)
class NightPlan:
    day: date
    compact_first: date
    training_first: date
    training_last: date
    feature_days: int  # the span of the snapshots: ``feature_days`` days ending at ``day``
    daily_days: int = DAILY_DAYS  # a longer span keeps every day of these last days only

    @property
    def sparse(self) -> bool:
        return self.feature_days > self.daily_days

    def snapshot_days(self) -> list[date]:
        """The snapshot days the features job computes with :meth:`features_args`."""
        first = self.day - timedelta(days=self.feature_days - 1)
        return snapshot_days(first, self.day, self.daily_days if self.sparse else None)

    def compact_args(self) -> list[str]:
        return ["--date", self.compact_first.isoformat(), "--end", self.day.isoformat()]

    def features_args(self) -> list[str]:
        args = ["--date", self.day.isoformat(), "--days", str(self.feature_days)]
        return [*args, "--daily-days", str(self.daily_days)] if self.sparse else args

    def training_sets_args(self, domains: list[str]) -> list[str]:
        args = ["--start", self.training_first.isoformat(), "--end", self.training_last.isoformat()]
        for name in domains:
            args += ["--domain", name]
        return args

    def as_xcom(self, domains: list[str]) -> dict[str, Any]:
        """What the DAG's downstream tasks read (JSON-serializable)."""
        return {
            "day": self.day.isoformat(),
            "training_window": [self.training_first.isoformat(), self.training_last.isoformat()],
            "feature_snapshots": len(self.snapshot_days()),
            "compact_args": self.compact_args(),
            "features_args": self.features_args(),
            "training_sets_args": self.training_sets_args(domains),
        }


def _partition_dates(root: Path) -> dict[tuple[str, str], float]:
    """``(domain, date) -> newest file mtime`` of every ``domain=*/date=*`` partition under ``root``."""
    out: dict[tuple[str, str], float] = {}
    for directory in root.glob("domain=*/date=*"):
        stamps = [f.stat().st_mtime for f in directory.iterdir() if f.is_file()]
        if stamps:
            out[(directory.parent.name.split("=", 1)[1], directory.name.split("=", 1)[1])] = max(stamps)
    return out


def stale_raw_days(paths: DataPaths, last: date) -> list[date]:
    """Days up to ``last`` with a raw partition that has no compacted copy or is newer than it."""
    raw = _partition_dates(paths.events)
    compacted = _partition_dates(paths.compacted_events)
    stale = {
        date.fromisoformat(day) for (name, day), mtime in raw.items()
        if day <= last.isoformat() and ((name, day) not in compacted or mtime > compacted[(name, day)])
    }
    return sorted(stale)


def first_lake_day(paths: DataPaths) -> date | None:
    days = [date.fromisoformat(day) for _, day in _partition_dates(paths.events)]
    return min(days) if days else None


def plan_night(
    paths: DataPaths,
    day: date,
    compact_lookback_days: int,
    training_days: int | None,
    daily_days: int = DAILY_DAYS,
) -> NightPlan:
    """The night of ``day``. ``training_days``: the training window's length, or None (or 0) for all
    history (from the lake's first day); ``daily_days``: the recent days with a feature snapshot each."""
    if compact_lookback_days < 1 or (training_days is not None and training_days < 0) or daily_days < 1:
        raise ValueError("compact_lookback_days and daily_days must be >= 1, training_days >= 1 (0/None: all)")
    earliest = first_lake_day(paths) or day
    stale = stale_raw_days(paths, day)
    compact_first = min([max(day - timedelta(days=compact_lookback_days - 1), earliest), *stale])
    training_last = day - timedelta(days=1)
    training_first = earliest if not training_days else max(day - timedelta(days=training_days), earliest)
    if training_first > training_last:
        raise ValueError(f"no training window before {day}: the lake starts on {earliest}")
    feature_first = max(training_first - timedelta(days=1), earliest)
    return NightPlan(
        day=day,
        compact_first=compact_first,
        training_first=training_first,
        training_last=training_last,
        feature_days=(day - feature_first).days + 1,
        daily_days=daily_days,
    )
