"""The building blocks every feature view is computed from: daily interaction aggregates, expanded
to the snapshot days they count towards, plus the column helpers the views share.

Expansion multiplies rows by the number of snapshot days, so the views expand only what they need:
the user views the days with the user's own actions (lifetime), the item views per-item daily totals
within their longest window.

A snapshot day ``s`` describes the world at the END of ``s`` (midnight UTC of ``s + 1``, its *cutoff*):
every event before the cutoff counts, nothing after it does. ``age_days`` is how many days before the
snapshot day an aggregate's day lies (0 = the snapshot day itself), so "in the last 7 days" is
``age_days < 7``. Timestamps inside the aggregates are epoch seconds.
"""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common.domains import domains
from common.features import CREATED, EVENT_TIMESTAMP, NO_TIME_DAYS
from spark_jobs.jobs import days_between

SNAPSHOT = "snapshot_date"
DAY = "day"
AGE_DAYS = "age_days"
SECONDS_PER_DAY = 86_400
RANK = "_rank"

_VIEW_EVENTS = ("view", "click")


def event_kinds(spark: SparkSession) -> DataFrame:
    """(domain, event_type) -> positive weight, is_positive, is_conversion, from the domain config."""
    rows = [
        (d.name, t, float(d.positive_events.get(t, 0.0)), t in d.positive_events, t == d.conversion_event)
        for d in domains().values()
        for t in d.event_types
    ]
    return spark.createDataFrame(
        rows, "domain string, event_type string, weight double, is_positive boolean, is_conversion boolean"
    )


def daily_interactions(events: DataFrame, catalog: DataFrame) -> DataFrame:
    """Per (user, item, day): counts of each kind of event, conversion value, first/last action, category.

    ``actions`` are the user's own events (everything but impressions); ``views`` are views+clicks;
    ``conversions`` are the domain's conversion event (retail purchase, banking approval);
    ``slate_clicks`` are clicks on a served slate (with a ``request_id``), the numerator of CTR.
    """
    kinds = F.broadcast(event_kinds(events.sparkSession))
    typed = events.join(kinds, ["domain", "event_type"], "left")
    kind, ts = F.col("event_type"), F.unix_seconds("timestamp")
    action, conversion = kind != "impression", F.coalesce(F.col("is_conversion"), F.lit(False))
    daily = typed.groupBy("domain", "user_id", "item_id", F.to_date("timestamp").alias(DAY)).agg(
        F.count_if(action).alias("actions"),
        F.count_if(kind.isin(*_VIEW_EVENTS)).alias("views"),
        F.count_if((kind == "click") & F.col("request_id").isNotNull()).alias("slate_clicks"),
        F.count_if(kind == "impression").alias("impressions"),
        F.count_if(conversion).alias("conversions"),
        F.count_if(F.coalesce(F.col("is_positive"), F.lit(False))).alias("positives"),
        F.sum(F.coalesce(F.col("weight"), F.lit(0.0))).alias("weight"),
        F.count_if(kind == "decline").alias("declines"),
        F.count_if(kind == "application_start").alias("app_starts"),
        F.count_if(kind == "application_approved").alias("approvals"),
        F.sum(F.when(conversion, F.col("value"))).alias("conv_value"),
        F.count(F.when(conversion, F.col("value"))).alias("conv_valued"),
        F.max(F.when(action, ts)).alias("last_action_ts"),
        F.max(F.when(conversion, ts)).alias("last_conv_ts"),
        F.min(F.when(action, ts)).alias("first_action_ts"),
    )
    return daily.join(catalog.select("item_id", "category"), "item_id", "left")


def daily_sessions(events: DataFrame) -> DataFrame:
    """Per (user, session, day): the user's own events in the session and the time of the last one."""
    return (
        events.where((F.col("event_type") != "impression") & F.col("session_id").isNotNull())
        .groupBy("user_id", "session_id", F.to_date("timestamp").alias(DAY))
        .agg(F.count("*").alias("events"), F.max(F.unix_seconds("timestamp")).alias("last_ts"))
    )


def expand(daily: DataFrame, first: date, last: date, horizon_days: int | None = None) -> DataFrame:
    """Repeat each daily row once per snapshot day ``first``..``last`` it counts towards: every snapshot on
    or after its day, or only those less than ``horizon_days`` after it (for windowed aggregates)."""
    until = F.lit(last) if horizon_days is None else F.least(F.date_add(F.col(DAY), horizon_days - 1), F.lit(last))
    return (
        daily.where(F.col(DAY) <= F.lit(last))
        .withColumn(SNAPSHOT, F.explode(F.sequence(F.greatest(F.col(DAY), F.lit(first)), until)))
        .withColumn(AGE_DAYS, F.datediff(F.col(SNAPSHOT), F.col(DAY)))
    )


def snapshots(spark: SparkSession, first: date, last: date) -> DataFrame:
    return spark.createDataFrame([(d,) for d in days_between(first, last)], f"{SNAPSHOT} date")


def entity_snapshots(
    daily: DataFrame, table: DataFrame, key: str, since: str, first: date, last: date
) -> DataFrame:
    """(key, snapshot) for every entity that exists at the snapshot's cutoff: it has an event by then,
    or the table (users/catalog) lists it with ``since`` (sign-up/launch) before the cutoff."""
    seen = daily.groupBy(key).agg(F.min(DAY).alias("_first_day")).where(F.col("_first_day") <= F.lit(last))
    from_events = seen.select(
        key, F.explode(F.sequence(F.greatest(F.col("_first_day"), F.lit(first)), F.lit(last))).alias(SNAPSHOT)
    )
    listed = (
        table.select(key, since)
        .crossJoin(F.broadcast(snapshots(table.sparkSession, first, last)))
        .where(F.col(since).isNull() | (F.unix_seconds(since) < cutoff_seconds()))
        .select(key, SNAPSHOT)
    )
    return from_events.unionByName(listed).distinct()


def cutoff_seconds() -> Column:
    """Epoch seconds of the snapshot's cutoff (midnight UTC after the snapshot day)."""
    return F.unix_seconds(F.date_add(F.col(SNAPSHOT), 1).cast("timestamp"))


def with_timestamps(frame: DataFrame, created: datetime) -> DataFrame:
    """Add the feature-row timestamps: ``event_timestamp`` = the snapshot's cutoff, ``created`` = the run's."""
    return frame.withColumn(EVENT_TIMESTAMP, F.date_add(F.col(SNAPSHOT), 1).cast("timestamp")).withColumn(
        CREATED, F.lit(created).cast("timestamp")
    )


def within(days: int, column: str) -> Column:
    """``column`` where the row lies in the last ``days`` days of the snapshot, else 0 (sum it)."""
    return F.when(F.col(AGE_DAYS) < days, F.col(column)).otherwise(0)


def days_since(epoch_seconds: Column) -> Column:
    """Days from ``epoch_seconds`` to the cutoff, capped at NO_TIME_DAYS (also when it never happened)."""
    days = (cutoff_seconds() - epoch_seconds) / SECONDS_PER_DAY
    return F.coalesce(F.least(days, F.lit(NO_TIME_DAYS)), F.lit(NO_TIME_DAYS))


def ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, 0 where the denominator is 0."""
    return F.when(denominator > 0, numerator / denominator).otherwise(0.0)


def empty_if_null(column: Column, element_type: str) -> Column:
    return F.coalesce(column, F.array().cast(f"array<{element_type}>"))


def ranked(frame: DataFrame, group: list[str], order: list[Column]) -> DataFrame:
    """Add ``_rank`` (1, 2, ...) within each group in the given order."""
    return frame.withColumn(RANK, F.row_number().over(Window.partitionBy(*group).orderBy(*order)))


def collect_ranked(frame: DataFrame, group: list[str], fields: dict[str, str], limit: int | None = None) -> DataFrame:
    """One row per group with aligned arrays ``{output: source column}`` in ``_rank`` order (first ``limit``)."""
    kept = frame if limit is None else frame.where(F.col(RANK) <= limit)
    collected = kept.groupBy(*group).agg(
        F.sort_array(F.collect_list(F.struct(RANK, *fields.values()))).alias("_ranked")
    )
    return collected.select(*group, *(F.col(f"_ranked.{src}").alias(out) for out, src in fields.items()))
