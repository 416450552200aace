"""Batch features: the five Feast offline sources, one row per entity per snapshot day.

For the logical date ``D`` and ``--days N`` the job computes the snapshot days ``D-N+1 .. D`` from the
compacted events (all history up to ``D``), the catalogs and the user tables, and overwrites
``features/<view>/`` (plain Parquet, all domains together) for every view of ``BATCH_VIEWS``:
columns = entity key, ``event_timestamp`` (the snapshot's cutoff: midnight UTC after the day, the
moment its values became true), ``created`` (the cutoff of ``D``: the same for every row of a run, so a
re-run is byte-for-byte the same data) and the view's fields with the Spark types of their Feast dtypes.
A user (item) gets a row for a snapshot day once it exists: signed up (launched) before the cutoff,
or seen in an event.
"""

from __future__ import annotations

import sys
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
from spark_jobs.item_features import WINDOWS, item_daily, item_features, item_stats, item_totals
from spark_jobs.jobs import data_paths, day_end, job_parser, parse_date, run_main, step
from spark_jobs.lake_io import conform_view, read_catalog, read_compacted_events, read_users, write_view
from spark_jobs.session import job_session
from spark_jobs.user_features import user_activity, user_history, user_profile, user_totals

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


def build_feature_views(
    events: DataFrame, catalog: DataFrame, users: DataFrame, logical_date: date, days: int
) -> FeatureViews:
    """The pure core: every batch view for the ``days`` snapshot days ending at ``logical_date``."""
    if days < 1:
        raise ValueError("days must be >= 1")
    first = logical_date - timedelta(days=days - 1)
    daily = ix.daily_interactions(events, catalog).cache()
    actions = ix.expand(daily.where(F.col("actions") > 0), first, logical_date).cache()
    per_item_day = item_daily(daily)
    item_rows = ix.expand(per_item_day, first, logical_date, horizon_days=max(WINDOWS))
    sessions = ix.expand(ix.daily_sessions(events), first, logical_date)
    user_universe = ix.entity_snapshots(daily, users, USER_ID, "signed_up_at", first, logical_date).cache()
    item_universe = ix.entity_snapshots(per_item_day, catalog, ITEM_ID, "launched_at", first, logical_date)
    per_user = user_totals(actions).cache()
    per_item = item_totals(item_rows).cache()
    frames = {
        USER_PROFILE.name: user_profile(per_user, actions, users, user_universe),
        USER_HISTORY.name: user_history(actions, user_universe),
        USER_ACTIVITY.name: user_activity(per_user, actions, sessions, user_universe),
        ITEM_FEATURES.name: item_features(per_item, catalog, item_universe),
        ITEM_STATS.name: item_stats(per_item, catalog, item_universe),
    }
    created = day_end(logical_date)
    return FeatureViews(
        frames={spec.name: conform_view(ix.with_timestamps(frames[spec.name], created), spec) for spec in BATCH_VIEWS},
        cached=(daily, actions, user_universe, per_user, per_item),
    )


def run_features(spark: SparkSession, paths: DataPaths, logical_date: date, days: int) -> dict[str, int]:
    """Compute and write every batch view; returns the rows written per view."""
    with step(JOB, "read inputs") as out:
        events = read_compacted_events(spark, paths, logical_date)
        catalog, users = read_catalog(spark, paths), read_users(spark, paths)
        out.update(events=events.count(), items=catalog.count(), users=users.count())
    views = build_feature_views(events, catalog, users, logical_date, days)
    written: dict[str, int] = {}
    for spec in BATCH_VIEWS:
        with step(JOB, f"write {spec.name}") as out:
            write_view(views.frames[spec.name], paths, spec)
            written[spec.name] = spark.read.parquet(str(paths.feature_source(spec.name))).count()
            out.update(rows=written[spec.name], snapshots=days)
    views.release()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Compute the batch feature views (Feast offline sources) for snapshot days up to a date.")
    parser.add_argument("--date", type=parse_date, required=True, help="logical date: the last snapshot day")
    parser.add_argument("--days", type=int, default=1, help="number of snapshot days ending at --date (backfill)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be >= 1")
    paths = data_paths(args)
    with job_session("recsys-features", args.master) as spark:
        written = run_features(spark, paths, args.date, args.days)
    print(f"[{JOB}] done: {written}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "features"))
