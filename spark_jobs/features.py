"""Batch features: the five Feast offline sources, one row per entity per snapshot day.

The snapshot days end at the logical date ``D`` (always one: materialization loads it into the online
store): ``--days N`` is every day of ``D-N+1 .. D``; with ``--daily-days K`` a long span keeps a bounded
number of them (every day of the last K, weekly and then every 28 days further back, see
:mod:`spark_jobs.snapshots`); ``--snapshots`` lists them outright. The job computes them from the
compacted events (all history up to ``D``), the catalogs and the user tables, and overwrites
``features/<view>/`` (plain Parquet, all domains together) for every view of ``BATCH_VIEWS``:
columns = entity key, ``event_timestamp`` (the snapshot's cutoff: midnight UTC after the day, the
moment its values became true), ``created`` (the cutoff of ``D``: the same for every row of a run, so a
re-run is byte-for-byte the same data) and the view's fields with the Spark types of their Feast dtypes.
A user (item) gets a row for a snapshot day once it exists: signed up (launched) before the cutoff,
or seen in an event. A sparse snapshot's values are exactly those a dense run gives that day (its
windows still end at its cutoff); the work grows with entities x snapshots, not with the span.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.features import (
    BATCH_VIEWS,
    ITEM_FEATURES,
    ITEM_ID,
    ITEM_STATS,
    USER_ACTIVITY,
    USER_HISTORY,
    USER_ID,
    USER_PROFILE,
)
from common.paths import DataPaths
from spark_jobs import interactions as ix
from spark_jobs.account_features import account_activity, account_daily, account_profile, split_account_events
from spark_jobs.item_features import WINDOWS, item_daily, item_features, item_stats, item_totals
from spark_jobs.jobs import data_paths, day_end, job_parser, parse_date, run_main, step
from spark_jobs.lake_io import conform_view, read_catalog, read_compacted_events, read_users, write_view
from spark_jobs.session import job_session
from spark_jobs.snapshots import MONTH, WEEKLY_DAYS, check_gaps, parse_days, snapshot_days
from spark_jobs.user_features import (
    session_depth,
    user_activity,
    user_history,
    user_items,
    user_profile,
    user_totals,
    user_windows,
)

JOB = "features"


@dataclass(frozen=True)
class FeatureViews:
    """Every batch view (conformed to its offline-source schema) by name, and the intermediate frames
    cached because several views read them (``release`` them when the views are written)."""

    frames: dict[str, DataFrame]
    cached: tuple[DataFrame, ...]

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def build_feature_views(events: DataFrame, catalog: DataFrame, users: DataFrame, days: Sequence[date]) -> FeatureViews:
    """The pure core: every batch view for the sorted snapshot ``days`` (contiguous or not; the last is the
    run's logical date). Rows are entities x snapshots; no intermediate grows with the span of history."""
    check_gaps(days)
    events, account = split_account_events(events)
    daily = ix.daily_interactions(events, catalog).cache()
    actions = daily.where(F.col("actions") > 0)
    changes = ix.bucket(actions, days).cache()
    per_item_day = item_daily(daily)
    user_universe = ix.entity_snapshots(daily, users, USER_ID, "signed_up_at", days).cache()
    item_universe = ix.entity_snapshots(per_item_day, catalog, ITEM_ID, "launched_at", days).cache()
    totals = user_totals(changes).cache()
    items = user_items(changes).cache()
    per_item = item_totals(ix.expand(per_item_day, days, max(WINDOWS))).cache()
    per_account_day = account_daily(account).cache()
    frames = {
        USER_PROFILE.name: user_profile(totals, user_windows(actions, days), items, users, user_universe,
                                        account_profile(per_account_day, days)),
        USER_HISTORY.name: user_history(items, user_universe),
        USER_ACTIVITY.name: user_activity(
            totals, items, session_depth(ix.bucket(ix.daily_sessions(events), days)), user_universe,
            account_activity(per_account_day, days),
        ),
        ITEM_FEATURES.name: item_features(per_item, catalog, item_universe),
        ITEM_STATS.name: item_stats(per_item, catalog, item_universe),
    }
    created = day_end(days[-1])
    return FeatureViews(
        frames={spec.name: conform_view(ix.with_timestamps(frames[spec.name], created), spec) for spec in BATCH_VIEWS},
        cached=(daily, changes, user_universe, item_universe, totals, items, per_item, per_account_day),
    )


def run_features(spark: SparkSession, paths: DataPaths, days: Sequence[date]) -> dict[str, int]:
    """Compute and write every batch view for the sorted snapshot ``days``; returns the rows written per view."""
    with step(JOB, "read inputs") as out:
        events = read_compacted_events(spark, paths, days[-1])
        catalog, users = read_catalog(spark, paths), read_users(spark, paths)
        out.update(events=events.count(), items=catalog.count(), users=users.count(),
                   snapshots=f"{len(days)} ({days[0]}..{days[-1]})")
    views = build_feature_views(events, catalog, users, days)
    written: dict[str, int] = {}
    for spec in BATCH_VIEWS:
        with step(JOB, f"write {spec.name}") as out:
            write_view(views.frames[spec.name], paths, spec)
            written[spec.name] = spark.read.parquet(str(paths.feature_source(spec.name))).count()
            out.update(rows=written[spec.name], snapshots=len(days))
    views.release()
    return written


def _snapshot_list(text: str) -> list[date]:
    try:
        return parse_days(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Compute the batch feature views (Feast offline sources) for snapshot days up to a date.")
    parser.add_argument("--date", type=parse_date, required=True, help="logical date: the last snapshot day")
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--days", type=int, default=None,
        help="the span: snapshot days ending at --date (default 1); every one of them unless --daily-days",
    )
    span.add_argument(
        "--snapshots", type=_snapshot_list, default=None,
        help="explicit snapshot days, comma-separated YYYY-MM-DD on or before --date (--date is always one)",
    )
    parser.add_argument(
        "--daily-days", type=int, default=None,
        help=f"sparse snapshots over a long --days span: every day of the last K days up to --date, weekly back "
             f"to {WEEKLY_DAYS} days, every {MONTH} days beyond, and the span's first day (default: every day)",
    )
    args = parser.parse_args(argv)
    if args.days is not None and args.days < 1:
        parser.error("--days must be >= 1")
    if args.daily_days is not None and (args.daily_days < 1 or args.snapshots is not None):
        parser.error("--daily-days must be >= 1 and goes with --days, not --snapshots")
    if args.snapshots is not None:
        if args.snapshots[-1] > args.date:
            parser.error(f"snapshot day {args.snapshots[-1]} is after --date {args.date}")
        days = sorted({*args.snapshots, args.date})
    else:
        days = snapshot_days(args.date - timedelta(days=(args.days or 1) - 1), args.date, args.daily_days)
    try:
        check_gaps(days)
    except ValueError as err:
        parser.error(str(err))
    paths = data_paths(args)
    with job_session("recsys-features", args.master, [paths.compacted_events]) as spark:
        written = run_features(spark, paths, days)
    print(f"[{JOB}] done: {written}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "features"))
