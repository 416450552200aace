"""The user feature views: ``user_profile``, ``user_history`` and ``user_activity`` (its batch initialisation).

The lifetime values are computed at the user's *change points* only -- the snapshots whose bucket
holds some of the user's actions (see :mod:`spark_jobs.interactions`): :func:`user_totals` (running
sums), :func:`user_items` (per item interacted with by then) and :func:`session_depth`. The windowed
counts come from :func:`user_windows` (actions expanded to the snapshots within their window). Each view
then gives every (user, snapshot) of the universe the values of its latest change point, and returns
one row per user per snapshot day, keyed by ``user_id`` and ``snapshot_date``, with the view's field
names (types are conformed when written).

Semantics shared with the streaming job (``user_activity``): an *interaction* is any of the user's own
events (not an impression); ``recent_item_ids`` are the last RECENT_LENGTH distinct items interacted
with, newest first; ``recent_category_keys``/``recent_category_counts`` are the categories of those
items (most recent first) and how many of them fall in each; ``session_depth`` counts the interactions
of the user's latest session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from common.features import HISTORY_LENGTH, RECENT_LENGTH, TOP_CATEGORIES, USER_ID
from spark_jobs.account_features import (
    ACCOUNT_ACTIVITY_FIELDS,
    ACCOUNT_FIELDS,
    with_account_defaults,
    with_activity_defaults,
)
from spark_jobs.interactions import (
    AGE_DAYS,
    DAY,
    RANK,
    SECONDS_PER_DAY,
    SNAPSHOT,
    at_changes,
    carry_forward,
    collect_ranked,
    cutoff_seconds,
    days_since,
    empty_if_null,
    expand,
    ranked,
    ratio,
    running,
    within,
)

KEY = [USER_ID, SNAPSHOT]
PURCHASE_WINDOW, APPLICATION_WINDOW = 30, 90  # days of purchase_count/active_days_30d and applications_90d
_PROFILE_ATTRIBUTES = ("country", "age_band", "age", "income", "credit_score", "dti", "has_arrears")
_LIFETIME_SUMS = ("conv_value", "conv_valued", "lifetime_events", "lifetime_purchases", "approvals_total",
                  "declines_total")


def user_windows(actions: DataFrame, days: Sequence[date]) -> DataFrame:
    """Per (user, snapshot) with actions in its windows: the windowed counts of user_profile
    (``actions``: the daily rows of the user's own actions, not bucketed)."""
    per_day = actions.groupBy(USER_ID, DAY).agg(
        F.sum("conversions").alias("conversions"), F.sum("app_starts").alias("app_starts")
    )
    expanded = expand(per_day, days, max(PURCHASE_WINDOW, APPLICATION_WINDOW))
    return expanded.groupBy(*KEY).agg(
        F.sum(within(PURCHASE_WINDOW, "conversions")).alias("purchase_count_30d"),
        F.count_if(F.col(AGE_DAYS) < PURCHASE_WINDOW).alias("active_days_30d"),
        F.sum(within(APPLICATION_WINDOW, "app_starts")).alias("applications_90d"),
    )


def user_totals(changes: DataFrame) -> DataFrame:
    """Per (user, change point): the lifetime values user_profile and user_activity use, as of it
    (``changes``: the bucketed daily rows of the user's own actions)."""
    per_bucket = changes.groupBy(*KEY).agg(
        F.sum("conv_value").alias("conv_value"),
        F.sum("conv_valued").alias("conv_valued"),
        F.sum("actions").alias("lifetime_events"),
        F.sum("conversions").alias("lifetime_purchases"),
        F.sum("approvals").alias("approvals_total"),
        F.sum("declines").alias("declines_total"),
        F.max("last_conv_ts").alias("last_conv_ts"),
        F.max("last_action_ts").alias("last_action_ts"),
        F.min("first_action_ts").alias("first_action_ts"),
        F.collect_set(F.when(F.col("approvals") > 0, F.col("item_id"))).alias("approved_items"),
    )
    so_far = running(USER_ID)
    return per_bucket.select(
        *KEY,
        *(F.sum(name).over(so_far).alias(name) for name in _LIFETIME_SUMS),
        *(F.max(name).over(so_far).alias(name) for name in ("last_conv_ts", "last_action_ts")),
        F.min("first_action_ts").over(so_far).alias("first_action_ts"),
        F.array_distinct(F.flatten(F.collect_list("approved_items").over(so_far))).alias("approved_items"),
    )


def user_items(changes: DataFrame) -> DataFrame:
    """Per (user, change point, item interacted with by then): lifetime counts, positive weight and last
    interaction, ranked newest first (``_rank``)."""
    counts = ("views", "conversions", "declines", "weight")
    per_bucket = changes.groupBy(*KEY, "item_id").agg(
        *(F.sum(name).alias(name) for name in counts),
        F.max("last_action_ts").alias("last_ts"),
        F.max("category").alias("category"),
    )
    so_far = running(USER_ID, "item_id")
    states = per_bucket.select(
        *KEY, "item_id", "category",
        *(F.sum(name).over(so_far).alias(name) for name in counts),
        F.max("last_ts").over(so_far).alias("last_ts"),
    )
    return ranked(at_changes(states, USER_ID, "item_id"), KEY, [F.col("last_ts").desc(), F.col("item_id").asc()])


def session_depth(sessions: DataFrame) -> DataFrame:
    """Per (user, snapshot where the user's sessions changed): the interactions of the latest session by
    then (``sessions``: bucketed :func:`spark_jobs.interactions.daily_sessions`). The latest session is
    one with events in that bucket: they are later than every earlier bucket's."""
    per_bucket = sessions.groupBy(*KEY, "session_id").agg(F.sum("events").alias("events"), F.max("last_ts").alias("last_ts"))
    so_far = running(USER_ID, "session_id")
    states = per_bucket.select(
        *KEY, "session_id",
        F.sum("events").over(so_far).alias("session_depth"),
        F.max("last_ts").over(so_far).alias("last_ts"),
    )
    latest = ranked(states, KEY, [F.col("last_ts").desc(), F.col("session_id").desc()])
    return latest.where(F.col(RANK) == 1).select(*KEY, "session_depth")


def _category_affinity(items: DataFrame) -> DataFrame:
    """Top TOP_CATEGORIES categories by share of the user's weighted positive events."""
    per_category = (
        items.where((F.col("weight") > 0) & F.col("category").isNotNull())
        .groupBy(*KEY, "category")
        .agg(F.sum("weight").alias("w"))
    )
    shares = per_category.withColumn("score", F.col("w") / F.sum("w").over(Window.partitionBy(*KEY)))
    order = [F.col("score").desc(), F.col("category").asc()]
    return collect_ranked(
        ranked(shares, KEY, order), KEY, {"top_categories": "category", "top_category_scores": "score"}, TOP_CATEGORIES
    )


def user_profile(
    totals: DataFrame, windows: DataFrame, items: DataFrame, users: DataFrame, universe: DataFrame,
    account: DataFrame,
) -> DataFrame:
    """``totals``/``items``: :func:`user_totals`/:func:`user_items`; ``windows``: :func:`user_windows`;
    ``account``: :func:`spark_jobs.account_features.account_profile`."""
    state = totals.join(_category_affinity(items), KEY, "left")
    profile = carry_forward(universe, USER_ID, state).join(windows, KEY, "left").join(users, USER_ID, "left")
    profile = with_account_defaults(profile.join(account, KEY, "left"))
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
        *ACCOUNT_FIELDS,
    )


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


def user_history(items: DataFrame, universe: DataFrame) -> DataFrame:
    """``items``: :func:`user_items` (every change point has at least one item, so a row of each)."""
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
    joined = carry_forward(universe, USER_ID, history.join(categories, KEY, "left"))
    return joined.select(*KEY, *(empty_if_null(F.col(c), t).alias(c) for c, t in _HISTORY_ARRAYS.items()))


def user_activity(totals: DataFrame, items: DataFrame, sessions: DataFrame, universe: DataFrame,
                  account: DataFrame) -> DataFrame:
    """``totals``/``items``: :func:`user_totals`/:func:`user_items` (the same change points);
    ``sessions``: :func:`session_depth` (its own change points, carried on their own); ``account``:
    :func:`spark_jobs.account_features.account_activity` (per snapshot)."""
    recent_items = items.where(F.col(RANK) <= RECENT_LENGTH)
    recent = collect_ranked(recent_items, KEY, {"recent_item_ids": "item_id"})
    recent_categories = collect_ranked(
        _category_counts(recent_items, {"items": F.count("*")}), KEY,
        {"recent_category_keys": "category", "recent_category_counts": "items"},
    )
    state = (
        totals.select(*KEY, "last_action_ts", "last_conv_ts")
        .join(recent, KEY, "left")
        .join(recent_categories, KEY, "left")
    )
    joined = carry_forward(universe, USER_ID, state, sessions).join(account, KEY, "left")
    return with_activity_defaults(joined.select(
        *KEY,
        F.coalesce(F.col("session_depth"), F.lit(0)).alias("session_depth"),
        F.coalesce(F.col("last_action_ts"), F.lit(0)).alias("last_event_ts"),
        F.coalesce(F.col("last_conv_ts"), F.lit(0)).alias("last_purchase_ts"),
        *(empty_if_null(F.col(c), t).alias(c) for c, t in _ACTIVITY_ARRAYS.items()),
        *(F.col(c) for c in ACCOUNT_ACTIVITY_FIELDS),
    ))
