"""The snapshot-day rule of the features job: every day of a short span, a bounded number over years."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from common.features import BATCH_VIEWS
from spark_jobs.snapshots import MAX_GAP_DAYS, MONTH, WEEK, check_gaps, parse_days, snapshot_days

LAST = date(2024, 6, 4)


def _gaps(days: list[date]) -> list[int]:
    return [(b - a).days for a, b in zip(days, days[1:], strict=False)]


def test_without_daily_days_every_day_is_a_snapshot() -> None:
    assert snapshot_days(date(2024, 6, 1), LAST) == [date(2024, 6, n) for n in range(1, 5)]
    assert snapshot_days(LAST, LAST) == [LAST]
    # a span no longer than the daily part is every day too
    assert snapshot_days(date(2024, 6, 1), LAST, daily_days=14) == snapshot_days(date(2024, 6, 1), LAST)


def test_the_rule_daily_then_weekly_then_every_28_days() -> None:
    first = LAST - timedelta(days=99)
    days = snapshot_days(first, LAST, daily_days=5, weekly_days=40)
    assert days[0] == first and days[-1] == LAST
    assert days[-5:] == [LAST - timedelta(days=n) for n in range(4, -1, -1)]  # the last 5 days, every one
    weekly = [d for d in days if 5 <= (LAST - d).days < 40]
    assert weekly and all(d.toordinal() % WEEK == 0 for d in weekly) and set(_gaps(weekly)) == {WEEK}
    older = [d for d in days if (LAST - d).days >= 40 and d != first]
    assert older and all(d.toordinal() % MONTH == 0 for d in older) and set(_gaps(older)) == {MONTH}
    assert max(_gaps(days)) <= MONTH


def test_twenty_years_make_a_bounded_number_of_snapshots_within_every_ttl() -> None:
    first = date(2004, 6, 4)
    days = snapshot_days(first, LAST, daily_days=14)
    assert (LAST - first).days + 1 == 7306
    assert 300 <= len(days) <= 330  # 14 daily + ~50 weekly + ~247 four-weekly + the first day
    assert days[0] == first and days[-1] == LAST and days == sorted(set(days))
    assert max(_gaps(days)) <= MONTH <= min(spec.ttl_days for spec in BATCH_VIEWS) == MAX_GAP_DAYS
    # a hundred years grow it by ~13 a year, not 365
    assert len(snapshot_days(date(1924, 6, 4), LAST, daily_days=14)) < len(days) + 80 * 14


def test_old_snapshots_stay_the_same_day_night_after_night() -> None:
    first = date(2010, 1, 1)
    tonight = snapshot_days(first, LAST, daily_days=14)
    tomorrow = snapshot_days(first, LAST + timedelta(days=1), daily_days=14)
    older = [d for d in tonight if d < LAST - timedelta(days=20)]
    assert older == [d for d in tomorrow if d < LAST - timedelta(days=20)]


def test_snapshots_further_apart_than_the_shortest_ttl_are_refused() -> None:
    check_gaps([date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=MAX_GAP_DAYS)])
    with pytest.raises(ValueError, match="exceed the shortest feature TTL"):
        check_gaps([date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=MAX_GAP_DAYS + 1)])
    with pytest.raises(ValueError):
        snapshot_days(LAST, LAST - timedelta(days=1))
    with pytest.raises(ValueError):
        snapshot_days(date(2024, 1, 1), LAST, daily_days=0)


def test_written_out_snapshot_days() -> None:
    assert parse_days("2024-06-04, 2024-05-01,2024-06-04") == [date(2024, 5, 1), LAST]
    with pytest.raises(ValueError):
        parse_days(" , ")
