"""Which days the features job snapshots (pure Python: the nightly plan imports it without Spark).

A short span gets a snapshot every day. A long one (years of a business's own history) gets daily
snapshots for the recent days only and sparser ones further back, so the number of snapshots -- and
the feature rows, entities x snapshots -- stays bounded however long the history is:

- every day of the last ``daily_days`` days up to ``last`` (``last``, the day materialization loads
  into the online store, is always one);
- every WEEK-th day back to WEEKLY_DAYS before ``last``;
- every MONTH-th day (a subset of the weekly ones) further back;
- ``first`` itself: the day before the training window, so its first examples find a row.

The sparse days lie on a fixed calendar grid (day ordinals divisible by the stride: Sundays, every
fourth Sunday), not relative to ``last``, so an old snapshot is the same day night after night.

Point-in-time joins give an example at time ``t`` a view's latest row with ``event_timestamp <= t``
only if it is younger than the view's TTL. Consecutive snapshot cutoffs may therefore never lie further
apart than the shortest TTL of the batch views (checked here): a 28-day stride under a 30-day TTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from common.features import BATCH_VIEWS

DAILY_DAYS = 30  # the recent days that get a snapshot each (the nightly plan's default): a month
WEEKLY_DAYS = 365  # weekly snapshots this far back from the last day, MONTH-strided beyond
WEEK, MONTH = 7, 28
MAX_GAP_DAYS = min(spec.ttl_days for spec in BATCH_VIEWS)  # no example may outlive its view's TTL


def snapshot_days(first: date, last: date, daily_days: int | None = None, weekly_days: int = WEEKLY_DAYS) -> list[date]:
    """The sorted snapshot days of ``first``..``last``: every day if ``daily_days`` is None, else the rule above."""
    if last < first:
        raise ValueError(f"last snapshot day {last} is before the first {first}")
    span = (last - first).days + 1
    if daily_days is None:
        return [first + timedelta(days=n) for n in range(span)]
    if daily_days < 1 or weekly_days < daily_days:
        raise ValueError("daily_days must be >= 1 and weekly_days >= daily_days")
    days = {first, *(last - timedelta(days=n) for n in range(min(daily_days, span)))}
    for back in range(daily_days, span):
        day = last - timedelta(days=back)
        if day.toordinal() % (WEEK if back < weekly_days else MONTH) == 0:
            days.add(day)
    out = sorted(days)
    check_gaps(out)
    return out


def check_gaps(days: Sequence[date]) -> None:
    """Refuse snapshot days whose cutoffs lie more than MAX_GAP_DAYS apart: an example between them would
    find only a row older than the TTL of some view, i.e. no features at all."""
    gaps = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
    if gaps and max(gaps) > MAX_GAP_DAYS:
        raise ValueError(f"snapshot days {max(gaps)} days apart exceed the shortest feature TTL ({MAX_GAP_DAYS} days)")


def parse_days(text: str) -> list[date]:
    """Snapshot days written out: comma-separated ``YYYY-MM-DD`` (sorted and de-duplicated)."""
    days = sorted({date.fromisoformat(part.strip()) for part in text.split(",") if part.strip()})
    if not days:
        raise ValueError("no snapshot days given")
    return days
