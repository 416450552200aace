"""Point-in-time correct training sets per domain, for the window ``--start``..``--end`` (dates included).

- ``ranking`` (domains that log impressions): one row per impression -- ``event_id``, ``request_id``, ``domain``, ``user_id``,
  ``item_id``, ``event_timestamp`` (the impression time), ``position``, ``device``, ``propensity``,
  ``arm``; labels ``clicked`` (a click on the same request_id + item) and ``converted`` (the domain's
  conversion event -- retail purchase, banking approval -- of that item by that user within
  CONVERSION_WINDOW after the impression); the scalar fields of user_profile, user_activity,
  item_features and item_stats as of the impression; the request context; the cross features computed
  from the user_history row as of the impression. Array fields are not copied (the history arrays are
  consumed by the cross features).
- ``retrieval``: one row per positive interaction (``positive_events`` of the domain config) --
  ``event_id``, ``domain``, ``user_id``, ``item_id``, ``event_type``, ``weight``, ``timestamp``. No view is
  joined: the towers build each example's history from the interactions themselves
  (:mod:`spark_jobs.retrieval_examples`, the shape of the real-time ``recent_item_ids``) and read nothing
  else, so an as-of join per interaction would be paid every night for columns nobody reads.

Feature values are joined as Feast would (see :mod:`spark_jobs.point_in_time`): never a value that
became true after the example. Labels need the CONVERSION_WINDOW after ``--end`` to have happened:
build a window that ended at least a day before the last compacted date.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.domains import domain as domain_config
from common.features import EVENT_TIMESTAMP, FEATURE_SERVICES, REQUEST_CONTEXT, USER_HISTORY, FeatureViewSpec
from common.paths import DataPaths
from spark_jobs.interactions import event_kinds
from spark_jobs.jobs import data_paths, day_end, day_start, job_parser, parse_date, run_main, step
from spark_jobs.lake_io import in_window, read_compacted_events, read_view
from spark_jobs.point_in_time import join_views
from spark_jobs.ranking_features import HISTORY_TIME, add_ranking_features
from spark_jobs.session import job_session

JOB = "training-sets"
CONVERSION_WINDOW = timedelta(hours=24)
RANKING_VIEWS = tuple(s for s in FEATURE_SERVICES["ranking_v1"] if s is not REQUEST_CONTEXT)


def labelled_impressions(events: DataFrame, first: date, last: date) -> DataFrame:
    """The impressions of the window with their ``clicked`` and ``converted`` labels (0/1)."""
    impressions = in_window(events.where(F.col("event_type") == "impression"), "timestamp", first, last).select(
        "event_id", "request_id", "domain", "user_id", "item_id", F.col("timestamp").alias(EVENT_TIMESTAMP),
        "position", "device", "propensity", "arm",
    )
    clicks = (
        events.where((F.col("event_type") == "click") & F.col("request_id").isNotNull())
        .select("request_id", "item_id").distinct().withColumn("clicked", F.lit(1))
    )
    conversion_kinds = event_kinds(events.sparkSession).where("is_conversion").select("domain", "event_type")
    conversions = events.join(F.broadcast(conversion_kinds), ["domain", "event_type"]).select(
        "user_id", "item_id", F.col("timestamp").alias("_converted_at")
    )
    converted = (
        impressions.join(conversions, ["user_id", "item_id"])
        .where(F.col("_converted_at").between(F.col(EVENT_TIMESTAMP), F.col(EVENT_TIMESTAMP) + CONVERSION_WINDOW))
        .select("event_id").distinct().withColumn("converted", F.lit(1))
    )
    return (
        impressions.join(clicks, ["request_id", "item_id"], "left")
        .join(converted, "event_id", "left")
        .fillna(0, subset=["clicked", "converted"])
    )


def positive_interactions(events: DataFrame, first: date, last: date) -> DataFrame:
    """The window's positive events with their weight from the domain config."""
    positive = event_kinds(events.sparkSession).where("is_positive").select("domain", "event_type", "weight")
    return in_window(events, "timestamp", first, last).join(F.broadcast(positive), ["domain", "event_type"]).select(
        "event_id", "domain", "user_id", "item_id", "event_type", "weight", "timestamp"
    )


def ranking_set(examples: DataFrame, views: Mapping[FeatureViewSpec, DataFrame]) -> DataFrame:
    joined = join_views(
        examples, {s: views[s] for s in RANKING_VIEWS}, EVENT_TIMESTAMP, {USER_HISTORY.name: HISTORY_TIME}
    )
    arrays = [
        f.name for s in RANKING_VIEWS if s is not USER_HISTORY for f in s.fields if f.dtype.startswith("Array(")
    ]
    return add_ranking_features(joined, EVENT_TIMESTAMP).drop(*arrays)


def domain_views(
    views: Mapping[FeatureViewSpec, DataFrame], name: str, first: date, last: date
) -> dict[FeatureViewSpec, DataFrame]:
    """The rows of the domain's entities (ids carry the domain prefix) that can be joined to the window."""
    prefix = domain_config(name).id_prefix
    return {
        spec: frame.where(
            F.col(spec.entity).startswith(prefix)
            & (F.col(EVENT_TIMESTAMP) < F.lit(day_end(last)))
            & (F.col(EVENT_TIMESTAMP) >= F.lit(day_start(first - timedelta(days=spec.ttl_days))))
        )
        for spec, frame in views.items()
    }


def run_training_sets(
    spark: SparkSession, paths: DataPaths, first: date, last: date, domains: list[str] | None = None
) -> dict[tuple[str, str], int]:
    """Build and write both sets for each domain; returns rows written by (domain, set name)."""
    events = read_compacted_events(spark, paths, last + timedelta(days=1), first)
    names = domains or [r["domain"] for r in events.select("domain").distinct().orderBy("domain").collect()]
    ranked = [name for name in names if domain_config(name).logs_impressions]
    views = {spec: read_view(spark, paths, spec) for spec in RANKING_VIEWS} if ranked else {}  # only a ranking set joins views
    written: dict[tuple[str, str], int] = {}
    for name in names:
        in_domain = events.where(F.col("domain") == name)
        sets = {"retrieval": positive_interactions(in_domain, first, last)}
        if name in ranked:
            impressions = labelled_impressions(in_domain, first, last)
            sets["ranking"] = ranking_set(impressions, domain_views(views, name, first, last))
        else:  # its ranker bootstraps from the retrievers (spark_jobs/bootstrap_ranking.py), after they train
            print(f"[{JOB}] {name} logs no impressions: no impression ranking set", flush=True)
        for set_name, frame in sets.items():
            with step(JOB, f"{name} {set_name} {first}..{last}") as out:
                target = str(paths.training(name, set_name))
                frame.write.mode("overwrite").parquet(target)
                written[(name, set_name)] = spark.read.parquet(target).count()
                out.update(rows=written[(name, set_name)])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Build point-in-time correct ranking and retrieval training sets per domain.")
    parser.add_argument("--start", type=parse_date, required=True, help="first day of the window (YYYY-MM-DD)")
    parser.add_argument("--end", type=parse_date, required=True, help="last day of the window (YYYY-MM-DD)")
    parser.add_argument(
        "--domain", action="append", default=None, help="domain to build (repeatable; default: all in the lake)"
    )
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error("--end is before --start")
    paths = data_paths(args)
    with job_session("recsys-training-sets", args.master, [paths.compacted_events]) as spark:
        written = run_training_sets(spark, paths, args.start, args.end, args.domain)
    print(f"[{JOB}] done: " + ", ".join(f"{d}/{n}={rows}" for (d, n), rows in written.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "training-sets"))
