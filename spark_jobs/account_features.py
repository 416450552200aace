"""The account features of ``user_profile``: what card payments, salary credits and transfers say about a
customer that their segment does not (:mod:`common.account_events`).

Per (user, snapshot), over the account events before the snapshot's cutoff:

- ``card_spend_30d``: the amount paid by card in the last 30 days;
- ``spend_share_<category>_30d`` for the signal categories (home, family, travel): that category's
  share of the card payments of the last 30 days (0 without payments);
- ``large_transfers_90d``: outgoing transfers of at least ``LARGE_TRANSFER`` in the last 90 days;
- ``days_since_salary_change``: days since a salary credit differed by more than 1% from the one
  before it (``NO_TIME_DAYS`` if none in that long).

:func:`account_activity` is the batch initialisation of the streamed account state of ``user_activity``
(``beam_jobs.user_state``): the last salary credit, the last salary change, the large transfers of the
last 90 days. Account events never enter the item-based views: :func:`split_account_events` takes them
out first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from common.account_events import LARGE_TRANSFER, SALARY_CHANGE, SIGNAL_CATEGORIES, TRANSFER_WINDOW_DAYS
from common.domains import domains
from common.features import NO_TIME_DAYS, USER_ID
from spark_jobs.interactions import DAY, SNAPSHOT, days_since, expand, ratio, within

CARD_WINDOW, TRANSFER_WINDOW = 30, TRANSFER_WINDOW_DAYS
LAST_CREDIT_DAYS = 62  # two monthly pay cycles
SHARES = {category: f"spend_share_{category}_30d" for category in SIGNAL_CATEGORIES}
ACCOUNT_FIELDS = ("card_spend_30d", *SHARES.values(), "large_transfers_90d", "days_since_salary_change")
ACCOUNT_ACTIVITY_FIELDS = ("salary_credit", "salary_credit_ts", "salary_change_ts", "large_transfer_ts")
KEY = [USER_ID, SNAPSHOT]


def split_account_events(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(item events, account events)`` by the account event types the domains declare."""
    kinds = sorted({kind for config in domains().values() for kind in config.account_events})
    is_account = F.col("event_type").isin(*kinds) if kinds else F.lit(False)
    return events.where(~is_account), events.where(is_account)


def account_daily(account: DataFrame) -> DataFrame:
    """Per (user, day) with account events: card payments (count, amount, per signal category), large
    transfers (count, epoch seconds), the day's last salary credit (``struct(ts, amount)``) and the time
    of its last salary change."""
    kind, value = F.col("event_type"), F.col("value")
    card, salary = kind == "card_spend", kind == "salary_credit"
    large = (kind == "transfer") & (value >= LARGE_TRANSFER)
    category = F.regexp_extract("item_id", r"mcc_(.+)$", 1)
    previous = F.lag(value).over(Window.partitionBy(USER_ID, kind).orderBy("timestamp", "event_id"))
    changed = salary & previous.isNotNull() & (F.abs(value - previous) > SALARY_CHANGE * previous)
    marked = account.withColumn("_salary_changed", changed)
    return marked.groupBy(USER_ID, F.to_date("timestamp").alias(DAY)).agg(
        F.count_if(card).alias("card_payments"),
        F.coalesce(F.sum(F.when(card, value)), F.lit(0.0)).alias("card_amount"),
        *(F.count_if(card & (category == name)).alias(f"card_{name}") for name in SHARES),
        F.count_if(large).alias("large_transfers"),
        F.collect_list(F.when(large, F.unix_seconds("timestamp"))).alias("large_transfer_ts"),
        F.max(F.when(salary, F.struct(F.unix_seconds("timestamp").alias("ts"), value.alias("amount")))).alias("salary"),
        F.max(F.when(F.col("_salary_changed"), F.unix_seconds("timestamp"))).alias("salary_change_ts"),
    )


def account_profile(daily: DataFrame, days: Sequence[date]) -> DataFrame:
    """Per (user, snapshot) with account events in its windows (``daily``: :func:`account_daily`):
    :data:`ACCOUNT_FIELDS` (users without any get the defaults from :func:`with_account_defaults`). Each
    daily row reaches only the snapshots of the longest window that reads it: payments and transfers 90
    days, salary changes ``NO_TIME_DAYS``."""
    moves = daily.where((F.col("card_payments") > 0) | (F.col("large_transfers") > 0))
    windowed = expand(moves, days, TRANSFER_WINDOW).groupBy(*KEY).agg(
        F.sum(within(CARD_WINDOW, "card_payments")).alias("_payments"),
        F.sum(within(CARD_WINDOW, "card_amount")).alias("card_spend_30d"),
        *(F.sum(within(CARD_WINDOW, f"card_{name}")).alias(f"_{name}") for name in SHARES),
        F.sum(within(TRANSFER_WINDOW, "large_transfers")).alias("large_transfers_90d"),
    )
    return windowed.join(salary_changes(daily, days), KEY, "full").select(
        *KEY, "card_spend_30d",
        *(ratio(F.col(f"_{name}"), F.col("_payments")).alias(field) for name, field in SHARES.items()),
        "large_transfers_90d",
        days_since(F.col("salary_change_ts")).alias("days_since_salary_change"),
    )


def salary_changes(daily: DataFrame, days: Sequence[date]) -> DataFrame:
    """Per (user, snapshot) with a salary change in the last ``NO_TIME_DAYS``: ``salary_change_ts``, the last."""
    changes = daily.where(F.col("salary_change_ts").isNotNull()).select(USER_ID, DAY, "salary_change_ts")
    return expand(changes, days, int(NO_TIME_DAYS)).groupBy(*KEY).agg(F.max("salary_change_ts").alias("salary_change_ts"))


def account_activity(daily: DataFrame, days: Sequence[date]) -> DataFrame:
    """Per (user, snapshot) with account events: the account fields of ``user_activity``, the streamed
    state's batch initialisation (users without any get :func:`with_activity_defaults`). The last salary
    credit is kept ``LAST_CREDIT_DAYS``: the stream compares the next credit with it."""
    credits = daily.where(F.col("salary").isNotNull()).select(USER_ID, DAY, "salary")
    last_credit = expand(credits, days, LAST_CREDIT_DAYS).groupBy(*KEY).agg(F.max("salary").alias("salary"))
    transfers = expand(daily.where(F.col("large_transfers") > 0), days, TRANSFER_WINDOW).groupBy(*KEY).agg(
        F.sort_array(F.flatten(F.collect_list("large_transfer_ts")), asc=False).alias("large_transfer_ts"))
    joined = last_credit.join(salary_changes(daily, days), KEY, "full").join(transfers, KEY, "full")
    return joined.select(*KEY, F.col("salary.amount").alias("salary_credit"), F.col("salary.ts").alias("salary_credit_ts"),
                         "salary_change_ts", "large_transfer_ts")


def _with_defaults(frame: DataFrame, defaults: dict[str, Column]) -> DataFrame:
    for name, default in defaults.items():
        frame = frame.withColumn(name, F.coalesce(F.col(name), default))
    return frame


def with_account_defaults(profile: DataFrame) -> DataFrame:
    """Fill the account features of users without account events: no spend, no transfer, no change."""
    return _with_defaults(profile, {"card_spend_30d": F.lit(0.0), **{field: F.lit(0.0) for field in SHARES.values()},
                                    "large_transfers_90d": F.lit(0), "days_since_salary_change": F.lit(NO_TIME_DAYS)})


def with_activity_defaults(activity: DataFrame) -> DataFrame:
    """Fill the account fields of ``user_activity`` for users without account events: 0 and []."""
    return _with_defaults(activity, {"salary_credit": F.lit(0.0), "salary_credit_ts": F.lit(0),
                                     "salary_change_ts": F.lit(0),
                                     "large_transfer_ts": F.array().cast("array<bigint>")})
