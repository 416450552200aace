"""The night's plan: compaction range, training window and feature days from the logical date and the lake."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest

from common.paths import DataPaths
from orchestration.plan import plan_night, stale_raw_days

DAY = date(2024, 3, 12)


def _partition(root, domain: str, day: date, mtime: float) -> None:
    directory = root / f"domain={domain}" / f"date={day.isoformat()}"
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / "part-0.parquet"
    part.write_bytes(b"x")
    os.utime(part, (mtime, mtime))


@pytest.fixture
def lake(data_paths: DataPaths) -> DataPaths:
    """Raw days 03-04..03-13 for retail; all compacted after they landed except the ones tests change."""
    for n in range(10):
        day = date(2024, 3, 4) + timedelta(days=n)
        _partition(data_paths.events, "retail", day, 1000.0)
        _partition(data_paths.compacted_events, "retail", day, 2000.0)
    return data_paths


def test_a_settled_lake_recompacts_only_the_lookback(lake: DataPaths) -> None:
    plan = plan_night(lake, DAY, compact_lookback_days=3, training_days=5)
    assert plan.compact_args() == ["--date", "2024-03-10", "--end", "2024-03-12"]
    assert (plan.training_first, plan.training_last) == (date(2024, 3, 7), date(2024, 3, 11))
    # snapshots 03-06 (the day before the window) .. 03-12
    assert plan.features_args() == ["--date", "2024-03-12", "--days", "7"]
    assert plan.training_sets_args(["retail", "banking"]) == [
        "--start", "2024-03-07", "--end", "2024-03-11", "--domain", "retail", "--domain", "banking"]


def test_never_compacted_or_changed_days_extend_the_compaction_back(lake: DataPaths) -> None:
    _partition(lake.events, "banking", date(2024, 3, 6), 1000.0)  # a new domain's day, never compacted
    _partition(lake.events, "retail", date(2024, 3, 8), 3000.0)  # late events landed after compaction
    _partition(lake.events, "retail", date(2024, 3, 20), 3000.0)  # after the logical date: not tonight's
    assert stale_raw_days(lake, DAY) == [date(2024, 3, 6), date(2024, 3, 8)]
    plan = plan_night(lake, DAY, compact_lookback_days=1, training_days=5)
    assert plan.compact_args() == ["--date", "2024-03-06", "--end", "2024-03-12"]


def test_the_windows_never_start_before_the_lake(lake: DataPaths) -> None:
    plan = plan_night(lake, DAY, compact_lookback_days=30, training_days=60)
    assert plan.compact_first == date(2024, 3, 4)
    assert (plan.training_first, plan.training_last) == (date(2024, 3, 4), date(2024, 3, 11))
    assert plan.feature_days == 9  # 03-04 .. 03-12


def test_a_logical_date_on_the_first_lake_day_has_no_training_window(lake: DataPaths) -> None:
    with pytest.raises(ValueError, match="no training window"):
        plan_night(lake, date(2024, 3, 4), compact_lookback_days=1, training_days=5)


def test_the_xcom_is_plain_json(lake: DataPaths) -> None:
    out = plan_night(lake, DAY, 2, 3).as_xcom(["retail"])
    assert out["day"] == "2024-03-12" and out["training_window"] == ["2024-03-09", "2024-03-11"]
    assert out["compact_args"] == ["--date", "2024-03-11", "--end", "2024-03-12"]


def test_all_history_starts_the_training_window_on_the_lakes_first_day(lake: DataPaths) -> None:
    for everything in (None, 0):
        plan = plan_night(lake, DAY, compact_lookback_days=1, training_days=everything)
        assert (plan.training_first, plan.training_last) == (date(2024, 3, 4), date(2024, 3, 11))
        assert plan.features_args() == ["--date", "2024-03-12", "--days", "9"]  # 03-04 .. 03-12, every day
    with pytest.raises(ValueError):
        plan_night(lake, DAY, compact_lookback_days=1, training_days=-1)


def test_twenty_years_of_history_make_a_bounded_number_of_feature_snapshots(data_paths: DataPaths) -> None:
    first, day = date(2004, 3, 1), DAY
    for raw in (first, day - timedelta(days=1), day):
        _partition(data_paths.events, "movielens", raw, 1000.0)
        _partition(data_paths.compacted_events, "movielens", raw, 2000.0)
    plan = plan_night(data_paths, day, compact_lookback_days=3, training_days=None)
    assert plan.training_first == first and plan.feature_days == (day - first).days + 1 == 7317
    assert plan.features_args() == ["--date", "2024-03-12", "--days", "7317", "--daily-days", str(plan.daily_days)]
    snapshots = plan.snapshot_days()
    assert snapshots[0] == first and snapshots[-1] == day  # the first examples' day before, and D
    assert snapshots[-plan.daily_days:] == [day - timedelta(days=n) for n in range(plan.daily_days - 1, -1, -1)]
    assert len(snapshots) < 350 and plan.as_xcom(["movielens"])["feature_snapshots"] == len(snapshots)
    assert max((b - a).days for a, b in zip(snapshots, snapshots[1:], strict=False)) <= 28

    one_year = plan_night(data_paths, day, compact_lookback_days=3, training_days=365, daily_days=14)
    assert one_year.features_args()[-2:] == ["--daily-days", "14"] and len(one_year.snapshot_days()) < 70
