"""Spark job: A/B metrics per arm and day from the event lake, then the per-arm comparison.

::

    lake events (compacted, or raw) of domain D, dates start..end
      -> assigned_users      user -> arm (from the arm logged on their impressions), first exposure;
                             users seen in two arms are excluded and counted
      -> impression_outcomes one row per impression + clicked / converted (feedback joined on
                             request_id + item_id)
      -> user_days           per user, arm and day: impressions, clicks, attributed conversions, and the
                             user's events since first exposure (orders, revenue, applications, approvals)
      -> aggregate           per arm and day (and per arm over the window): the metrics of
                             experiments.analysis.METRICS + the slate metrics (coverage, novelty,
                             serendipity, intra-list diversity, per group on the executors)
      -> driver              per-user totals -> comparisons with CIs, SRM, MDE (experiments.stats)

Writes ``data/experiments/<domain>/daily.parquet`` + ``comparison.json`` and prints the table.
Novelty and serendipity use the popularity of items among the users who interacted with them
(the domain's positive events) from ``lookback_days`` before ``end`` (or ``start`` if earlier) to ``end``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from common.domains import domain as domain_config
from common.domains import writable_domains
from common.lake import read_catalog as read_catalog_pandas
from common.paths import DataPaths
from experiments.analysis import (
    USER_COLUMNS,
    ABReport,
    CiMethod,
    MetricSpec,
    comparisons,
    domain_metrics,
    format_table,
    write_outputs,
)
from experiments.assignment import Experiment, experiment_for
from experiments.slates import SLATE_METRICS, SlateReference, slate_metrics
from experiments.stats import srm_check
from spark_jobs.jobs import data_paths, days_between, job_parser, parse_date, step
from spark_jobs.lake_io import DATE, read_compacted_events, read_raw_events
from spark_jobs.session import job_session

JOB = "ab_metrics"
ARM = "arm"
Source = Literal["compacted", "raw"]


@dataclass(frozen=True)
class ABOptions:
    ci: CiMethod = "delta"
    alpha: float = 0.05
    power: float = 0.8
    n_boot: int = 2000
    seed: int = 0
    lookback_days: int = 28
    srm_threshold: float = 0.001
    source: Source = "compacted"
    control: str | None = None  # compare the other arms against this one instead of the experiment's control


def assigned_users(events: DataFrame) -> DataFrame:
    """``user_id, arm, first_exposure, arms``: from impressions that carry an arm (``arms`` > 1: mixed user)."""
    impressions = events.where((F.col("event_type") == "impression") & F.col(ARM).isNotNull())
    return impressions.groupBy("user_id").agg(
        F.min(ARM).alias(ARM), F.min("timestamp").alias("first_exposure"), F.countDistinct(ARM).alias("arms")
    )


def impression_outcomes(events: DataFrame, users: DataFrame, conversion_event: str) -> DataFrame:
    """One row per impression of a singly-assigned user: ``user_id, arm, date, request_id, position,
    item_id, clicked, converted`` (0/1: a click / conversion event on that request and item)."""
    single = users.where(F.col("arms") == 1).select("user_id")
    impressions = events.where((F.col("event_type") == "impression") & F.col(ARM).isNotNull()).join(
        single, "user_id", "left_semi"
    )
    feedback = (
        events.where(F.col("request_id").isNotNull() & F.col("event_type").isin("click", conversion_event))
        .groupBy("request_id", "item_id")
        .agg(
            F.max((F.col("event_type") == "click").cast("int")).alias("clicked"),
            F.max((F.col("event_type") == conversion_event).cast("int")).alias("converted"),
        )
    )
    return (
        impressions.select("user_id", ARM, DATE, "request_id", "position", "item_id")
        .join(feedback, ["request_id", "item_id"], "left")
        .fillna(0, subset=["clicked", "converted"])
    )


def _count(event_type: str) -> Column:
    return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0))


def user_days(events: DataFrame, users: DataFrame, outcomes: DataFrame) -> DataFrame:
    """Per ``user_id, arm, date`` with activity since the user's first exposure: :data:`USER_COLUMNS`."""
    keys = ["user_id", ARM, DATE]
    slates = outcomes.groupBy(*keys).agg(
        F.count("*").alias("impressions"), F.sum("clicked").alias("clicks"),
        F.sum("converted").alias("attributed_conversions"),
    )
    exposed = users.where(F.col("arms") == 1).select("user_id", ARM, "first_exposure")
    since = events.drop(ARM).join(exposed, "user_id").where(F.col("timestamp") >= F.col("first_exposure"))
    activity = since.groupBy(*keys).agg(
        _count("purchase").alias("orders"),
        F.sum(F.when(F.col("event_type") == "purchase", F.coalesce(F.col("value"), F.lit(0.0))).otherwise(0.0))
        .alias("revenue"),
        _count("application_start").alias("applications"),
        _count("application_approved").alias("approvals"),
    )
    joined = slates.join(activity, keys, "full")
    return joined.select(*keys, *(F.coalesce(F.col(c), F.lit(0)).alias(c) for c in USER_COLUMNS))


def metric_column(spec: MetricSpec) -> Column:
    """The Spark aggregate of one metric over user rows (ratio of sums, share of users, mean)."""
    if spec.kind == "ratio":
        return F.try_divide(F.sum(spec.numerator).cast("double"), F.sum(spec.denominator).cast("double")).alias(spec.name)
    if spec.kind == "proportion":
        return F.avg((F.col(spec.numerator) > 0).cast("double")).alias(spec.name)
    return F.avg(F.col(spec.numerator).cast("double")).alias(spec.name)


def aggregate(rows: DataFrame, keys: Sequence[str], metrics: Sequence[MetricSpec]) -> DataFrame:
    """Per ``keys``: users (rows), impressions and every metric of ``metrics``."""
    return rows.groupBy(*keys).agg(
        F.count("*").alias("users"), F.sum("impressions").alias("impressions"), *(metric_column(m) for m in metrics)
    )


def user_totals(days: DataFrame) -> DataFrame:
    """Per ``user_id, arm`` over the window: the sums of :data:`USER_COLUMNS` (the unit of the statistics)."""
    return days.groupBy("user_id", ARM).agg(*(F.sum(c).alias(c) for c in USER_COLUMNS))


def slate_table(outcomes: DataFrame, reference: SlateReference, keys: Sequence[str]) -> DataFrame:
    """Per ``keys``: :data:`experiments.slates.SLATE_METRICS` of the served slates (computed per group)."""
    schema = StructType([*(StructField(k, StringType()) for k in keys),
                         *(StructField(m, DoubleType()) for m in SLATE_METRICS)])
    names = list(keys)

    def per_group(frame: pd.DataFrame) -> pd.DataFrame:
        row = {k: frame[k].iloc[0] for k in names}
        return pd.DataFrame([{**row, **slate_metrics(frame, reference)}])

    return outcomes.select(*keys, "request_id", "position", "item_id", "clicked").groupBy(*keys).applyInPandas(
        per_group, schema
    )


def slate_reference(paths: DataPaths, domain: str, reference_events: DataFrame) -> SlateReference:
    """Catalog taxonomy + reference popularity (distinct users with a positive event, per item and overall)."""
    positive = list(domain_config(domain).positive_events)
    interactions = reference_events.where(F.col("event_type").isin(positive))
    rows = interactions.rollup("item_id").agg(F.countDistinct("user_id").alias("users")).collect()
    counts = {r["item_id"]: r["users"] for r in rows if r["item_id"] is not None}
    n_users = next((r["users"] for r in rows if r["item_id"] is None), 0)
    catalog = (read_catalog_pandas(paths, domain) if paths.catalog(domain).exists()
               else pd.DataFrame(columns=["item_id", "category"]))
    return SlateReference.build(dict(zip(catalog["item_id"], catalog["category"], strict=True)), counts, n_users)


def read_window(spark: SparkSession, paths: DataPaths, domain: str, first: date, last: date, source: Source) -> DataFrame:
    if source == "raw":
        events = read_raw_events(spark, paths, days_between(first, last))
    else:
        events = read_compacted_events(spark, paths, last=last, first=first)
    return events.where(F.col("domain") == domain)


def analyse(spark: SparkSession, paths: DataPaths, domain: str, start: date, end: date,
            options: ABOptions = ABOptions(), experiment: Experiment | None = None) -> tuple[ABReport, pd.DataFrame]:
    """The A/B report of ``domain`` over ``start..end`` and its per-arm, per-day table."""
    metrics = domain_metrics(domain)
    first = min(start, end - timedelta(days=options.lookback_days))
    reference_events = read_window(spark, paths, domain, first, end, options.source)
    events = reference_events.where(F.col(DATE) >= start.isoformat()).persist()
    with step(JOB, f"{domain} assignment {start}..{end}") as out:
        users = assigned_users(events).persist()
        counts = users.agg(F.sum((F.col("arms") == 1).cast("long")).alias("single"),
                           F.sum((F.col("arms") > 1).cast("long")).alias("mixed")).first()
        mixed = int(counts["mixed"] or 0)
        unassigned = events.where((F.col("event_type") == "impression") & F.col(ARM).isNull()).count()
        out.update(users=int(counts["single"] or 0), mixed_arm_users=mixed, unassigned_impressions=unassigned)
    with step(JOB, f"{domain} per arm and day") as out:
        outcomes = impression_outcomes(events, users, domain_config(domain).conversion_event).persist()
        days = user_days(events, users, outcomes).persist()
        reference = slate_reference(paths, domain, reference_events)
        daily = aggregate(days, [ARM, DATE], metrics).join(slate_table(outcomes, reference, [ARM, DATE]), [ARM, DATE], "left")
        daily_frame = daily.toPandas().sort_values([DATE, ARM]).reset_index(drop=True)
        out.update(rows=len(daily_frame))
    with step(JOB, f"{domain} per arm over the window") as out:
        totals_frame = user_totals(days).persist()
        window = aggregate(totals_frame, [ARM], metrics).join(slate_table(outcomes, reference, [ARM]), [ARM], "left")
        window_frame = window.toPandas()
        totals = totals_frame.toPandas()
        out.update(users=len(totals), impressions=int(totals["impressions"].sum()))
    with step(JOB, f"{domain} comparison") as out:
        observed = totals[ARM].value_counts().to_dict()
        control = options.control or (experiment.control if experiment else "control")
        arms = [experiment.control, *experiment.treatments] if experiment else sorted(observed)
        treatments = [arm for arm in arms if arm != control]
        shares = experiment.shares if experiment else {a: 1.0 for a in observed}
        report = ABReport(
            domain=domain, experiment=experiment.name if experiment else None, control=control,
            start=start.isoformat(), end=end.isoformat(),
            arms={r[ARM]: {k: v for k, v in r.items() if k != ARM} for r in window_frame.to_dict("records")},
            srm=srm_check(observed, shares, options.srm_threshold),
            comparisons=comparisons(totals, metrics, control, treatments, options.ci, options.alpha, options.power,
                                    options.n_boot, options.seed),
            mixed_arm_users=int(mixed), unassigned_impressions=int(unassigned),
        )
        out.update(arms=len(observed), srm_p=f"{report.srm.p_value:.3g}")
    for frame in (totals_frame, days, outcomes, users, events):
        frame.unpersist()
    return report, daily_frame


def run(spark: SparkSession, paths: DataPaths, domains: Sequence[str], start: date, end: date,
        options: ABOptions = ABOptions()) -> list[ABReport]:
    """Analyse, write and print each domain's A/B test over ``start..end``."""
    days_between(start, end)  # validates the range
    reports = []
    for domain in domains:
        report, daily = analyse(spark, paths, domain, start, end, options, experiment_for(domain))
        folder = write_outputs(report, daily, paths)
        print(format_table(report), flush=True)
        print(f"[{JOB}] wrote {folder}", flush=True)
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("A/B metrics per arm and day from the event lake, with CIs, SRM and MDE.")
    parser.add_argument("--start", type=parse_date, required=True, help="first date of the window (YYYY-MM-DD)")
    parser.add_argument("--end", type=parse_date, required=True, help="last date of the window (YYYY-MM-DD)")
    parser.add_argument("--domain", action="append", default=None,
                        help="domain to analyse (repeatable; default: every writable domain)")
    parser.add_argument("--source", choices=["compacted", "raw"], default="compacted", help="lake zone to read")
    parser.add_argument("--ci", choices=["delta", "bootstrap"], default="delta",
                        help="interval method of ratio and mean metrics (proportions: z)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (with --ci bootstrap)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (two-sided)")
    parser.add_argument("--power", type=float, default=0.8, help="power for the minimum detectable effect")
    parser.add_argument("--lookback-days", type=int, default=28, help="popularity window of novelty/serendipity")
    parser.add_argument("--control", default=None,
                        help="compare the other arms against this arm (default: the experiment's control); e.g. "
                             "the arm without business boosts, to measure the boosts alone")
    args = parser.parse_args(argv)
    options = ABOptions(ci=args.ci, alpha=args.alpha, power=args.power, n_boot=args.n_boot,
                        lookback_days=args.lookback_days, source=args.source, control=args.control)
    with job_session("recsys-ab-metrics", args.master) as spark:
        run(spark, data_paths(args), args.domain or writable_domains(), args.start, args.end, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
