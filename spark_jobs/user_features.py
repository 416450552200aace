"""The user feature views: ``user_profile``, ``user_history`` and ``user_activity`` (its batch initialisation).

Each function takes the expanded daily aggregates of the user's own actions (see
:mod:`spark_jobs.interactions`) and the (user, snapshot) universe, and returns one row per user per
snapshot day, keyed by ``user_id`` and ``snapshot_date``, with the view's field names (types are
conformed when written).

Semantics shared with the streaming job (``user_activity``): an *interaction* is any of the user's own
events (not an impression); ``recent_item_ids`` are the last RECENT_LENGTH distinct items interacted
with, newest first; ``recent_category_keys``/``recent_category_counts`` are the categories of those
items (most recent first) and how many of them fall in each; ``session_depth`` counts the interactions
of the user's latest session.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from common.features import HISTORY_LENGTH, RECENT_LENGTH, TOP_CATEGORIES, USER_ID
from spark_jobs.interactions import (
    AGE_DAYS,
    DAY,
    RANK,
    SECONDS_PER_DAY,
    SNAPSHOT,
    collect_ranked,
    cutoff_seconds,
    days_since,
    empty_if_null,
    ranked,
    ratio,
    within,
)

KEY = [USER_ID, SNAPSHOT]
_PROFILE_ATTRIBUTES = ("country", "age_band", "age", "income", "credit_score", "dti", "has_arrears")


def user_totals(expanded: DataFrame) -> DataFrame:
    """Per (user, snapshot): the windowed and lifetime sums both user_profile and user_activity use."""
    return expanded.groupBy(*KEY).agg(
        F.sum(within(30, "conversions")).alias("purchase_count_30d"),
        F.countDistinct(F.when((F.col(AGE_DAYS) < 30) & (F.col("actions") > 0), F.col(DAY))).alias("active_days_30d"),
        F.sum("conv_value").alias("conv_value"),
        F.sum("conv_valued").alias("conv_valued"),
        F.sum("actions").alias("lifetime_events"),
        F.sum("conversions").alias("lifetime_purchases"),
        F.max("last_conv_ts").alias("last_conv_ts"),
        F.max("last_action_ts").alias("last_action_ts"),
        F.min("first_action_ts").alias("first_action_ts"),
        F.sum(within(90, "app_starts")).alias("applications_90d"),
        F.sum("approvals").alias("approvals_total"),
        F.sum("declines").alias("declines_total"),
        F.collect_set(F.when(F.col("approvals") > 0, F.col("item_id"))).alias("approved_items"),
    )


def _category_affinity(expanded: DataFrame) -> DataFrame:
    """Top TOP_CATEGORIES categories by share of the user's weighted positive events."""
    per_category = (
        expanded.where((F.col("weight") > 0) & F.col("category").isNotNull())
        .groupBy(*KEY, "category")
        .agg(F.sum("weight").alias("w"))
    )
    shares = per_category.withColumn("score", F.col("w") / F.sum("w").over(Window.partitionBy(*KEY)))
    order = [F.col("score").desc(), F.col("category").asc()]
    return collect_ranked(
        ranked(shares, KEY, order), KEY, {"top_categories": "category", "top_category_scores": "score"}, TOP_CATEGORIES
    )


def user_profile(totals: DataFrame, expanded: DataFrame, users: DataFrame, universe: DataFrame) -> DataFrame:
    profile = (
        universe.join(totals, KEY, "left")
        .join(_category_affinity(expanded), KEY, "left")
        .join(users, USER_ID, "left")
    )
    counts = ("purchase_count_30d", "active_days_30d", "lifetime_events", "lifetime_purchases",
              "applications_90d", "approvals_total", "declines_total")
    for name in counts:
        profile = profile.withColumn(name, F.coalesce(F.col(name), F.lit(0)))
    held = F.array_sort(F.array_distinct(F.concat(
        empty_if_null(F.col("products_held"), "string"), empty_if_null(F.col("approved_items"), "string")
    )))
    since = F.coalesce(F.unix_seconds("signed_up_at"), F.col("first_action_ts"))
    return profile.select(
        *KEY,
        *counts,
        ratio(F.col("purchase_count_30d"), F.col("active_days_30d")).alias("purchase_frequency_30d"),
        ratio(F.coalesce(F.col("conv_value"), F.lit(0.0)), F.coalesce(F.col("conv_valued"), F.lit(0))).alias(
            "avg_basket_value"
        ),
        days_since(F.col("last_conv_ts")).alias("days_since_last_purchase"),
        days_since(F.col("last_action_ts")).alias("days_since_last_session"),
        F.greatest((cutoff_seconds() - since) / SECONDS_PER_DAY, F.lit(0.0)).alias("tenure_days"),
        empty_if_null(F.col("top_categories"), "string").alias("top_categories"),
        empty_if_null(F.col("top_category_scores"), "double").alias("top_category_scores"),
        *_PROFILE_ATTRIBUTES,
        held.alias("products_held"),
        F.size(held).alias("num_products_held"),
    )


def _user_items(expanded: DataFrame) -> DataFrame:
    """Per (user, snapshot, item) the user interacted with: counts and last interaction, ranked newest first."""
    items = (
        expanded.where(F.col("actions") > 0)
        .groupBy(*KEY, "item_id")
        .agg(
            F.sum("views").alias("views"),
            F.sum("conversions").alias("conversions"),
            F.sum("declines").alias("declines"),
            F.max("last_action_ts").alias("last_ts"),
            F.max("category").alias("category"),
        )
    )
    return ranked(items, KEY, [F.col("last_ts").desc(), F.col("item_id").asc()])


def _category_counts(items: DataFrame, aggregates: dict[str, Column]) -> DataFrame:
    per_category = items.where(F.col("category").isNotNull()).groupBy(*KEY, "category").agg(
        F.max("last_ts").alias("last_ts"), *(column.alias(name) for name, column in aggregates.items())
    )
    return ranked(per_category, KEY, [F.col("last_ts").desc(), F.col("category").asc()])


_HISTORY_ARRAYS = {
    "hist_item_ids": "string", "hist_item_last_ts": "bigint", "hist_item_views": "bigint",
    "hist_item_purchases": "bigint", "hist_item_declines": "bigint",
    "cat_keys": "string", "cat_views": "bigint", "cat_purchases": "bigint", "cat_last_ts": "bigint",
}
_ACTIVITY_ARRAYS = {"recent_item_ids": "string", "recent_category_keys": "string", "recent_category_counts": "bigint"}


def user_history(expanded: DataFrame, universe: DataFrame) -> DataFrame:
    items = _user_items(expanded)
    history = collect_ranked(
        items, KEY,
        {"hist_item_ids": "item_id", "hist_item_last_ts": "last_ts", "hist_item_views": "views",
         "hist_item_purchases": "conversions", "hist_item_declines": "declines"},
        HISTORY_LENGTH,
    )
    categories = collect_ranked(
        _category_counts(items, {"views": F.sum("views"), "conversions": F.sum("conversions")}), KEY,
        {"cat_keys": "category", "cat_views": "views", "cat_purchases": "conversions", "cat_last_ts": "last_ts"},
    )
    joined = universe.join(history, KEY, "left").join(categories, KEY, "left")
    return joined.select(*KEY, *(empty_if_null(F.col(c), t).alias(c) for c, t in _HISTORY_ARRAYS.items()))


def _session_depth(expanded_sessions: DataFrame) -> DataFrame:
    per_session = expanded_sessions.groupBy(*KEY, "session_id").agg(
        F.sum("events").alias("session_depth"), F.max("last_ts").alias("last_ts")
    )
    latest = ranked(per_session, KEY, [F.col("last_ts").desc(), F.col("session_id").desc()])
    return latest.where(F.col(RANK) == 1).select(*KEY, "session_depth")


def user_activity(
    totals: DataFrame, expanded: DataFrame, expanded_sessions: DataFrame, universe: DataFrame
) -> DataFrame:
    recent_items = _user_items(expanded).where(F.col(RANK) <= RECENT_LENGTH)
    recent = collect_ranked(recent_items, KEY, {"recent_item_ids": "item_id"})
    recent_categories = collect_ranked(
        _category_counts(recent_items, {"items": F.count("*")}), KEY,
        {"recent_category_keys": "category", "recent_category_counts": "items"},
    )
    joined = (
        universe.join(totals.select(*KEY, "last_action_ts", "last_conv_ts"), KEY, "left")
        .join(_session_depth(expanded_sessions), KEY, "left")
        .join(recent, KEY, "left")
        .join(recent_categories, KEY, "left")
    )
    return joined.select(
        *KEY,
        F.coalesce(F.col("session_depth"), F.lit(0)).alias("session_depth"),
        F.coalesce(F.col("last_action_ts"), F.lit(0)).alias("last_event_ts"),
        F.coalesce(F.col("last_conv_ts"), F.lit(0)).alias("last_purchase_ts"),
        *(empty_if_null(F.col(c), t).alias(c) for c, t in _ACTIVITY_ARRAYS.items()),
    )
