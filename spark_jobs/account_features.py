"""The account features of ``user_profile``: what card payments, salary credits and transfers say about a
customer that their segment does not (:mod:`common.account_events`).

Per (user, snapshot), over the account events before the snapshot's cutoff:

- ``card_spend_30d``: the amount paid by card in the last 30 days;
- ``spend_share_<category>_30d`` for the signal categories (home, family, travel): that category's
  share of the card payments of the last 30 days (0 without payments);
- ``large_transfers_90d``: outgoing transfers of at least ``LARGE_TRANSFER`` in the last 90 days;
- ``days_since_salary_change``: days since a salary credit differed by more than 1% from the one
  before it (``NO_TIME_DAYS`` if none in that long).

Account events never enter the item-based views: :func:`split_account_events` takes them out first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.account_events import LARGE_TRANSFER, SIGNAL_CATEGORIES
from common.domains import domains
from common.features import NO_TIME_DAYS, USER_ID
from spark_jobs.interactions import DAY, SNAPSHOT, days_since, expand, ratio, within

CARD_WINDOW, TRANSFER_WINDOW = 30, 90
SALARY_CHANGE = 0.01  # a salary credit that differs from the previous one by more than this share
SHARES = {category: f"spend_share_{category}_30d" for category in SIGNAL_CATEGORIES}
ACCOUNT_FIELDS = ("card_spend_30d", *SHARES.values(), "large_transfers_90d", "days_since_salary_change")
KEY = [USER_ID, SNAPSHOT]


def split_account_events(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(item events, account events)`` by the account event types the domains declare."""
    kinds = sorted({kind for config in domains().values() for kind in config.account_events})
    is_account = F.col("event_type").isin(*kinds) if kinds else F.lit(False)
    return events.where(~is_account), events.where(is_account)


def account_daily(account: DataFrame) -> DataFrame:
    """Per (user, day) with account events: card payments (count, amount, per signal category), large
    transfers, and the time of the day's last salary change."""
    kind, value = F.col("event_type"), F.col("value")
    card = kind == "card_spend"
    category = F.regexp_extract("item_id", r"mcc_(.+)$", 1)
    previous = F.lag(value).over(Window.partitionBy(USER_ID, kind).orderBy("timestamp", "event_id"))
    changed = (kind == "salary_credit") & previous.isNotNull() & (F.abs(value - previous) > SALARY_CHANGE * previous)
    marked = account.withColumn("_salary_changed", changed)
    return marked.groupBy(USER_ID, F.to_date("timestamp").alias(DAY)).agg(
        F.count_if(card).alias("card_payments"),
        F.coalesce(F.sum(F.when(card, value)), F.lit(0.0)).alias("card_amount"),
        *(F.count_if(card & (category == name)).alias(f"card_{name}") for name in SHARES),
        F.count_if((kind == "transfer") & (value >= LARGE_TRANSFER)).alias("large_transfers"),
        F.max(F.when(F.col("_salary_changed"), F.unix_seconds("timestamp"))).alias("salary_change_ts"),
    )


def account_profile(account: DataFrame, days: Sequence[date]) -> DataFrame:
    """Per (user, snapshot) with account events in its windows: :data:`ACCOUNT_FIELDS` (users without any
    get the defaults from :func:`with_account_defaults`). Each daily row reaches only the snapshots of the
    longest window that reads it: payments and transfers 90 days, salary changes ``NO_TIME_DAYS``."""
    daily = account_daily(account)
    moves = daily.where((F.col("card_payments") > 0) | (F.col("large_transfers") > 0))
    windowed = expand(moves, days, TRANSFER_WINDOW).groupBy(*KEY).agg(
        F.sum(within(CARD_WINDOW, "card_payments")).alias("_payments"),
        F.sum(within(CARD_WINDOW, "card_amount")).alias("card_spend_30d"),
        *(F.sum(within(CARD_WINDOW, f"card_{name}")).alias(f"_{name}") for name in SHARES),
        F.sum(within(TRANSFER_WINDOW, "large_transfers")).alias("large_transfers_90d"),
    )
    changes = daily.where(F.col("salary_change_ts").isNotNull()).select(USER_ID, DAY, "salary_change_ts")
    latest = expand(changes, days, int(NO_TIME_DAYS)).groupBy(*KEY).agg(F.max("salary_change_ts").alias("_change_ts"))
    return windowed.join(latest, KEY, "full").select(
        *KEY, "card_spend_30d",
        *(ratio(F.col(f"_{name}"), F.col("_payments")).alias(field) for name, field in SHARES.items()),
        "large_transfers_90d",
        days_since(F.col("_change_ts")).alias("days_since_salary_change"),
    )


def with_account_defaults(profile: DataFrame) -> DataFrame:
    """Fill the account features of users without account events: no spend, no transfer, no change."""
    defaults = {"card_spend_30d": 0.0, **{field: 0.0 for field in SHARES.values()}, "large_transfers_90d": 0,
                "days_since_salary_change": NO_TIME_DAYS}
    for name, default in defaults.items():
        profile = profile.withColumn(name, F.coalesce(F.col(name), F.lit(default)))
    return profile
