"""The building blocks every feature view is computed from: daily interaction aggregates, brought to
the snapshot days they count towards, plus the column helpers the views share.

The snapshot days are any sorted set of days: every day of a short span, or daily recent days and
sparse older ones over years of history (:mod:`spark_jobs.snapshots`). A daily row reaches them in one
of two ways, and neither repeats it for every snapshot of the history:

- windowed aggregates ("in the last 30 days"): :func:`expand` repeats the row for the snapshots within
  its window only (at most the window's length of them);
- lifetime aggregates: :func:`bucket` gives the row the first snapshot that counts it; running totals
  over an entity's buckets are its values at its *change points*, :func:`at_changes` spreads per-part
  states (per item, per category) to them, and :func:`carry_forward` gives every other snapshot the
  values of its latest change point.

A snapshot day ``s`` describes the world at the END of ``s`` (midnight UTC of ``s + 1``, its *cutoff*):
every event before the cutoff counts, nothing after it does. ``age_days`` is how many days before the
snapshot day an aggregate's day lies (0 = the snapshot day itself), so "in the last 7 days" is
``age_days < 7``. Timestamps inside the aggregates are epoch seconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F

from common.domains import domains
from common.features import CREATED, EVENT_TIMESTAMP, NO_TIME_DAYS

SNAPSHOT = "snapshot_date"
DAY = "day"
AGE_DAYS = "age_days"
SECONDS_PER_DAY = 86_400
RANK = "_rank"
_AT, _FROM, _COUNT, _UNTIL = "_at", "_from", "_count", "_until"

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


def snapshot_array(days: Sequence[date]) -> Column:
    """The snapshot days as one array literal (position ``p`` is element ``p + 1``)."""
    return F.array(*(F.lit(day) for day in days))


def _positions(spark: SparkSession, days: Sequence[date], horizon_days: int | None) -> DataFrame:
    """Per calendar day ``d`` that counts towards some snapshot: ``_from``, the position of the first snapshot
    on or after ``d``, and ``_count``, how many snapshots lie in ``[d, d + horizon_days)`` (all from ``d`` on
    without a horizon). One row per calendar day of the span: a small table every lookup broadcasts."""
    lowest = days[0] - timedelta(days=(horizon_days or 1) - 1)
    rows = []
    for n in range((days[-1] - lowest).days + 1):
        day = lowest + timedelta(days=n)
        start = bisect_left(days, day)
        end = len(days) if horizon_days is None else bisect_right(days, day + timedelta(days=horizon_days - 1))
        if end > start:
            rows.append((day, start, end - start))
    return spark.createDataFrame(rows, f"{_AT} date, {_FROM} int, {_COUNT} int")


def _located(frame: DataFrame, day: Column, days: Sequence[date], horizon_days: int | None = None) -> DataFrame:
    """``frame`` with ``_from``/``_count`` of the snapshots its ``day`` counts towards (rows counting towards
    none are dropped); without a horizon a day before the first snapshot counts from the first one on."""
    if list(days) != sorted(set(days)) or not days:
        raise ValueError("snapshot days must be a non-empty, sorted list of distinct days")
    key = day if horizon_days is not None else F.greatest(day, F.lit(days[0]))
    positions = F.broadcast(_positions(frame.sparkSession, days, horizon_days))
    return frame.join(positions, key == F.col(_AT)).drop(_AT)


def expand(daily: DataFrame, days: Sequence[date], horizon_days: int) -> DataFrame:
    """Repeat each daily row once per snapshot day (of the sorted ``days``, contiguous or not) in its window:
    the snapshots on its day and the ``horizon_days - 1`` days after it (for windowed aggregates).

    Rows grow by at most the number of snapshots within a window, never by the span of the history.
    """
    located = _located(daily, F.col(DAY), days, horizon_days)
    return (
        located.withColumn(SNAPSHOT, F.explode(F.slice(snapshot_array(days), F.col(_FROM) + 1, F.col(_COUNT))))
        .withColumn(AGE_DAYS, F.datediff(F.col(SNAPSHOT), F.col(DAY)))
        .drop(_FROM, _COUNT)
    )


def bucket(daily: DataFrame, days: Sequence[date]) -> DataFrame:
    """Each daily row with ``snapshot_date`` = the first snapshot day on or after its day: the first snapshot it
    counts towards, and every later one does too (rows after the last snapshot day are dropped).

    Lifetime aggregates are running totals over these buckets: the *change points* of an entity are the
    snapshots of its buckets, and between two change points its lifetime values stay the same
    (:func:`at_changes`, :func:`carry_forward`) -- no row is repeated for every later snapshot.
    """
    located = _located(daily, F.col(DAY), days)
    return located.withColumn(SNAPSHOT, F.element_at(snapshot_array(days), F.col(_FROM) + 1)).drop(_FROM, _COUNT)


def running(*partition: str) -> WindowSpec:
    """A running frame (from the first snapshot to the current one) per ``partition``."""
    return Window.partitionBy(*partition).orderBy(SNAPSHOT).rowsBetween(Window.unboundedPreceding, Window.currentRow)


def at_changes(states: DataFrame, key: str, part: str) -> DataFrame:
    """Spread running states to the entity's change points.

    ``states``: per (``key``, ``part``, snapshot where the part changed) its running state as of that
    snapshot (e.g. a user's totals per item). Returns, for every change point of the key (a snapshot
    where any of its parts changed), the latest state of each of its parts at or before it -- one row
    per part the key has by then, as if every daily row had been expanded to every snapshot and summed.
    """
    changes = states.select(key, F.col(SNAPSHOT).alias(_AT)).distinct()
    spans = states.withColumn(_UNTIL, F.lead(SNAPSHOT).over(Window.partitionBy(key, part).orderBy(SNAPSHOT)))
    current = (F.col(_AT) >= F.col(SNAPSHOT)) & (F.col(_UNTIL).isNull() | (F.col(_AT) < F.col(_UNTIL)))
    return spans.join(changes, key).where(current).drop(SNAPSHOT, _UNTIL).withColumnRenamed(_AT, SNAPSHOT)


def carry_forward(universe: DataFrame, key: str, *states: DataFrame) -> DataFrame:
    """``universe`` (key, snapshot) with the columns of each ``states`` frame (key, change point, values)
    taken from its latest row at or before the snapshot (null before the first): the values of a change
    point hold until the next one. One sort per key, no join of every snapshot with every change point."""
    kind = "_kind"
    fields = [[c for c in state.columns if c not in (key, SNAPSHOT)] for state in states]
    merged = universe.select(key, SNAPSHOT, F.lit(1).alias(kind))
    for n, (state, columns) in enumerate(zip(states, fields, strict=True)):
        tagged = state.select(key, SNAPSHOT, F.lit(0).alias(kind), F.struct(*columns).alias(f"_state{n}"))
        merged = merged.unionByName(tagged, allowMissingColumns=True)
    order = Window.partitionBy(key).orderBy(SNAPSHOT, kind).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    filled = merged.select(
        key, SNAPSHOT, kind, *(F.last(f"_state{n}", ignorenulls=True).over(order).alias(f"_state{n}") for n in range(len(states)))
    )
    return filled.where(F.col(kind) == 1).select(
        key, SNAPSHOT, *(F.col(f"_state{n}.{c}").alias(c) for n, columns in enumerate(fields) for c in columns)
    )


def entity_snapshots(daily: DataFrame, table: DataFrame, key: str, since: str, days: Sequence[date]) -> DataFrame:
    """(key, snapshot) for every snapshot of ``days`` at whose cutoff the entity exists: it has an event by
    then, or the table (users/catalog) lists it with ``since`` (sign-up/launch) before the cutoff (or none)."""
    first_day = "_first_day"
    seen = daily.groupBy(key).agg(F.min(DAY).alias(first_day))
    listed = table.select(key, F.coalesce(F.to_date(since), F.lit(days[0])).alias(first_day))
    first = seen.unionByName(listed).groupBy(key).agg(F.min(first_day).alias(first_day))
    located = _located(first, F.col(first_day), days)
    return located.select(key, F.explode(F.slice(snapshot_array(days), F.col(_FROM) + 1, F.col(_COUNT))).alias(SNAPSHOT))


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
