"""The one feature-name module: Spark, Beam, Feast, the models and serving all import these names.

A feature view is described once here -- its entity, its fields and their types -- and every
component derives what it needs from it (Feast schemas, Spark output columns, Beam push rows,
model inputs, serving look-ups), so training and serving cannot drift apart.

Types are written as Feast primitive names: ``Int64``, ``Float32``, ``Float64``, ``String``,
``Bool``, ``UnixTimestamp`` and ``Array(<type>)``.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIMESTAMP = "event_timestamp"  # the timestamp column of every feature row (point-in-time joins)
CREATED = "created"  # when the row was written (tie-breaker for rows with equal event_timestamp)

NO_TIME_DAYS = 365.0  # "never happened" for days-since features
HISTORY_LENGTH = 50  # items kept in the compact per-user history
RECENT_LENGTH = 20  # items kept in the real-time recent-items list
TOP_CATEGORIES = 5  # categories kept in the category-affinity feature
CTR_PRIOR = 0.05  # click-through rates are smoothed towards this prior ...
CTR_PRIOR_IMPRESSIONS = 20.0  # ... with the weight of this many impressions


def smoothed_ctr(clicks, impressions):
    """``(clicks + CTR_PRIOR * CTR_PRIOR_IMPRESSIONS) / (impressions + CTR_PRIOR_IMPRESSIONS)``.

    The one CTR formula of the batch (Spark) and streaming (Beam) jobs; works on numbers, numpy
    arrays and Spark columns alike (only arithmetic operators).
    """
    return (clicks + CTR_PRIOR * CTR_PRIOR_IMPRESSIONS) / (impressions + CTR_PRIOR_IMPRESSIONS)


@dataclass(frozen=True)
class FeatureField:
    name: str
    dtype: str
    description: str


@dataclass(frozen=True)
class FeatureViewSpec:
    name: str
    entity: str  # join key: USER_ID or ITEM_ID
    fields: tuple[FeatureField, ...]
    description: str
    streaming: bool = False  # True: a push source feeds it too (the Beam job)
    ttl_days: int = 90

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def ref(self, feature: str) -> str:
        """A Feast feature reference ``view:feature``."""
        if feature not in self.names:
            raise KeyError(f"{feature!r} is not a feature of {self.name}")
        return f"{self.name}:{feature}"


USER_PROFILE = FeatureViewSpec(
    name="user_profile",
    entity=USER_ID,
    description="Per-user behaviour aggregates and profile attributes, computed nightly by Spark.",
    fields=(
        FeatureField("purchase_count_30d", "Int64", "purchases (retail) or approvals (banking) in the last 30 days"),
        FeatureField("purchase_frequency_30d", "Float32", "purchases per active day in the last 30 days"),
        FeatureField("avg_basket_value", "Float32", "mean purchase value over the user's lifetime"),
        FeatureField("lifetime_events", "Int64", "all non-impression events of the user"),
        FeatureField("lifetime_purchases", "Int64", "all purchases/approvals of the user"),
        FeatureField("active_days_30d", "Int64", "days with at least one event in the last 30 days"),
        FeatureField("days_since_last_purchase", "Float32", f"days since the last purchase ({NO_TIME_DAYS} if never)"),
        FeatureField("days_since_last_session", "Float32", f"days since the last event ({NO_TIME_DAYS} if never)"),
        FeatureField("tenure_days", "Float32", "days since sign-up"),
        FeatureField("top_categories", "Array(String)", f"the user's {TOP_CATEGORIES} highest-affinity categories"),
        FeatureField("top_category_scores", "Array(Float32)", "affinity of each top category (share of weighted events)"),
        FeatureField("country", "String", "retail: country"),
        FeatureField("age_band", "String", "retail: age band"),
        FeatureField("age", "Int64", "banking: age in years"),
        FeatureField("income", "Float32", "banking: yearly income"),
        FeatureField("credit_score", "Int64", "banking: credit score"),
        FeatureField("dti", "Float32", "banking: debt-to-income ratio"),
        FeatureField("has_arrears", "Bool", "banking: any payment in arrears"),
        FeatureField("products_held", "Array(String)", "banking: item_ids of products held"),
        FeatureField("num_products_held", "Int64", "banking: number of products held"),
        FeatureField("applications_90d", "Int64", "banking: application starts in the last 90 days"),
        FeatureField("approvals_total", "Int64", "banking: approved applications, lifetime"),
        FeatureField("declines_total", "Int64", "declines (banking: refused applications; retail: dismissed items), lifetime"),
        # account features (banking; 0 / NO_TIME_DAYS without account events): spark_jobs/account_features.py
        FeatureField("card_spend_30d", "Float32", "amount paid by card in the last 30 days"),
        FeatureField("spend_share_home_30d", "Float32", "share of the last 30 days' card payments at home merchants"),
        FeatureField("spend_share_family_30d", "Float32", "share of the last 30 days' card payments at family merchants"),
        FeatureField("spend_share_travel_30d", "Float32", "share of the last 30 days' card payments at travel merchants"),
        FeatureField("large_transfers_90d", "Int64", "large outgoing transfers in the last 90 days"),
        FeatureField("days_since_salary_change", "Float32", f"days since the salary credited changed ({NO_TIME_DAYS} if not)"),
    ),
)

USER_HISTORY = FeatureViewSpec(
    name="user_history",
    entity=USER_ID,
    description=(
        "Compact per-user interaction history from which user x item and user x category cross features "
        "are computed for every candidate, so ranking 500 candidates needs one online read, not 500."
    ),
    fields=(
        FeatureField("hist_item_ids", "Array(String)", f"the last {HISTORY_LENGTH} distinct items interacted with, newest first"),
        FeatureField("hist_item_last_ts", "Array(Int64)", "epoch seconds of the last interaction with each history item"),
        FeatureField("hist_item_views", "Array(Int64)", "views+clicks of each history item"),
        FeatureField("hist_item_purchases", "Array(Int64)", "purchases/approvals of each history item"),
        FeatureField("hist_item_declines", "Array(Int64)", "declines of each history item"),
        FeatureField("cat_keys", "Array(String)", "categories interacted with"),
        FeatureField("cat_views", "Array(Int64)", "views+clicks per category"),
        FeatureField("cat_purchases", "Array(Int64)", "purchases/approvals per category"),
        FeatureField("cat_last_ts", "Array(Int64)", "epoch seconds of the last interaction per category"),
    ),
)

USER_ACTIVITY = FeatureViewSpec(
    name="user_activity",
    entity=USER_ID,
    streaming=True,
    ttl_days=30,
    description="Real-time user activity: batch-initialised by Spark, then pushed by the Beam streaming job.",
    fields=(
        FeatureField("session_depth", "Int64", "events in the user's current session"),
        FeatureField("last_event_ts", "Int64", "epoch seconds of the user's last event"),
        FeatureField("last_purchase_ts", "Int64", "epoch seconds of the user's last purchase/approval (0 if never)"),
        FeatureField("recent_item_ids", "Array(String)", f"the last {RECENT_LENGTH} items interacted with, newest first"),
        FeatureField("recent_category_keys", "Array(String)", "categories of recent interactions"),
        FeatureField("recent_category_counts", "Array(Int64)", "recent interactions per category"),
        # account state (banking; 0 / [] without account events): spark_jobs/account_features.py, beam_jobs/user_state.py
        FeatureField("salary_credit", "Float32", "amount of the last salary credit (0 if none)"),
        FeatureField("salary_credit_ts", "Int64", "epoch seconds of the last salary credit (0 if none)"),
        FeatureField("salary_change_ts", "Int64",
                     "epoch seconds of the last salary credit that differed by more than 1% from the one before (0 if none)"),
        FeatureField("large_transfer_ts", "Array(Int64)",
                     "epoch seconds of the large outgoing transfers of the last 90 days, newest first"),
    ),
)

ITEM_FEATURES = FeatureViewSpec(
    name="item_features",
    entity=ITEM_ID,
    description="Item attributes and slow-moving popularity, computed nightly by Spark.",
    fields=(
        FeatureField("price", "Float32", "list price"),
        FeatureField("price_bucket", "Int64", "price decile within the domain (0-9)"),
        FeatureField("category", "String", "full taxonomy path"),
        FeatureField("category_l1", "String", "top level of the taxonomy"),
        FeatureField("margin", "Float32", "margin as a fraction of price"),
        FeatureField("launched_ts", "Int64", "epoch seconds of launch"),
        FeatureField("popularity_7d", "Int64", "positive events in the last 7 days"),
        FeatureField("popularity_30d", "Int64", "positive events in the last 30 days"),
        FeatureField("ctr_7d", "Float32", "smoothed click-through rate over 7 days"),
        FeatureField("ctr_30d", "Float32", "smoothed click-through rate over 30 days"),
    ),
)

ITEM_STATS = FeatureViewSpec(
    name="item_stats",
    entity=ITEM_ID,
    streaming=True,
    ttl_days=30,
    description="Fast-moving item state: batch-initialised by Spark, then pushed by the Beam streaming job.",
    fields=(
        FeatureField("popularity_1d", "Int64", "positive events in the last 24 hours"),
        FeatureField("impressions_1d", "Int64", "impressions in the last 24 hours"),
        FeatureField("ctr_1d", "Float32", "smoothed click-through rate over the last 24 hours"),
        FeatureField("inventory", "Int64", "units in stock"),
        FeatureField("in_stock", "Bool", "inventory > 0"),
    ),
)

REQUEST_CONTEXT = FeatureViewSpec(
    name="request_context",
    entity="",
    description="On-demand features of the request itself (computed at request time, never stored).",
    fields=(
        FeatureField("hour_of_day", "Int64", "0-23, UTC"),
        FeatureField("day_of_week", "Int64", "0=Monday"),
        FeatureField("is_weekend", "Bool", "Saturday or Sunday"),
        FeatureField("device_type", "String", "normalised device: web, ios, android or other"),
    ),
)
REQUEST_INPUTS = (FeatureField("request_ts", "Int64", "epoch seconds of the request"),
                  FeatureField("device", "String", "the device the request came from"))

BATCH_VIEWS = (USER_PROFILE, USER_HISTORY, USER_ACTIVITY, ITEM_FEATURES, ITEM_STATS)
ALL_VIEWS = (*BATCH_VIEWS, REQUEST_CONTEXT)

# Versioned feature services: which views each model consumes.
FEATURE_SERVICES: dict[str, tuple[FeatureViewSpec, ...]] = {
    "retrieval_v1": (USER_PROFILE, USER_ACTIVITY),
    "ranking_v1": (USER_PROFILE, USER_HISTORY, USER_ACTIVITY, ITEM_FEATURES, ITEM_STATS, REQUEST_CONTEXT),
}


def view(name: str) -> FeatureViewSpec:
    for spec in ALL_VIEWS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown feature view {name!r}")
