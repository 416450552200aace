"""Point-in-time ("as of") joins of training examples to feature-view rows, as Feast's offline store does.

For every example at time ``t`` and every view, the joined values come from the view's row for the
example's entity with the latest ``event_timestamp <= t`` (ties: the latest ``created``), and only if
that row is younger than the view's TTL (``event_timestamp >= t - ttl``); otherwise they are null.
A value that became true after ``t`` can therefore never leak into the example.

Implemented without a range join: examples and feature rows are put in one frame, sorted per entity
by time (feature rows before examples at equal times), and each example takes the last feature row
seen so far (``last(..., ignorenulls)`` over a running window) -- O(n log n), no row explosion.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.features import CREATED, EVENT_TIMESTAMP, FeatureViewSpec

_T, _KIND, _CREATED, _ROW, _ROW_TS = "_pit_t", "_pit_kind", "_pit_created", "_pit_row", "_pit_row_ts"


def as_of_join(
    examples: DataFrame, features: DataFrame, spec: FeatureViewSpec, at: str, row_time_as: str | None = None
) -> DataFrame:
    """``examples`` plus the fields of ``spec`` as of each example's ``at`` timestamp (null if none/expired).

    ``row_time_as`` also returns the matched feature row's ``event_timestamp`` under that name.
    """
    clash = set(spec.names) & set(examples.columns)
    if clash:
        raise ValueError(f"examples already have columns of {spec.name}: {sorted(clash)}")
    key = spec.entity
    rows = features.select(
        key,
        F.col(EVENT_TIMESTAMP).alias(_T),
        F.lit(0).alias(_KIND),
        F.col(CREATED).alias(_CREATED),
        F.struct(*spec.names, F.col(EVENT_TIMESTAMP).alias(_ROW_TS)).alias(_ROW),
    )
    tagged = examples.withColumn(_T, F.col(at)).withColumn(_KIND, F.lit(1))
    running = (
        Window.partitionBy(key)
        .orderBy(F.col(_T), F.col(_KIND), F.col(_CREATED).asc_nulls_first())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    merged = tagged.unionByName(rows, allowMissingColumns=True).withColumn(
        _ROW, F.last(_ROW, ignorenulls=True).over(running)
    )
    fresh = F.col(f"{_ROW}.{_ROW_TS}") >= F.col(_T) - F.make_dt_interval(days=F.lit(spec.ttl_days))
    values = [F.when(fresh, F.col(f"{_ROW}.{name}")).alias(name) for name in spec.names]
    if row_time_as:
        values.append(F.when(fresh, F.col(f"{_ROW}.{_ROW_TS}")).alias(row_time_as))
    return merged.where(F.col(_KIND) == 1).select(*examples.columns, *values)


def join_views(
    examples: DataFrame, views: Mapping[FeatureViewSpec, DataFrame], at: str,
    row_times: Mapping[str, str] | None = None,
) -> DataFrame:
    """As-of join every view in turn (``row_times``: view name -> column for its matched row time)."""
    joined = examples
    for spec, features in views.items():
        joined = as_of_join(joined, features, spec, at, (row_times or {}).get(spec.name))
    return joined
