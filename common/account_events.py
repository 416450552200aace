"""Account events: what a bank's core system says about a customer, beside what they do in the app.

Card payments (``card_spend``), salary credits (``salary_credit``) and large transfers (``transfer``)
are events of the contract like any other (:data:`common.schemas.EVENT_TYPES`), declared per domain in
``account_events`` of ``config/domains.yaml``. Their ``item_id`` names a counterparty, not a catalog
item: a merchant category (``<prefix>mcc_<category>``), the salary account (``<prefix>acct_salary``) or
the outgoing-transfer account (``<prefix>xfer_out``); ``value`` is the amount. Every item-based
consumer (retrieval, popularity, histories, item statistics) leaves them out
(:func:`common.domains.DomainConfig.item_event_types`); the account features read them: nightly in
``user_profile`` (``spark_jobs.account_features``), and as a streamed state in ``user_activity`` (the last
salary credit and change, the large transfers) that serving folds in at request time
(:func:`fresh_account_features`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.features import NO_TIME_DAYS

ACCOUNT_EVENTS = ("card_spend", "salary_credit", "transfer")
MERCHANT_CATEGORIES = ("groceries", "dining", "fuel", "shopping", "utilities", "home", "family", "travel")
# Categories whose spending says something a segment does not: moving home, a child, travel.
SIGNAL_CATEGORIES = ("home", "family", "travel")
LARGE_TRANSFER = 5_000.0  # a transfer of at least this value counts as large


def merchant_id(prefix: str, category: str) -> str:
    return f"{prefix}mcc_{category}"


def salary_account(prefix: str) -> str:
    return f"{prefix}acct_salary"


def transfer_account(prefix: str) -> str:
    return f"{prefix}xfer_out"


SALARY_CHANGE = 0.01  # a salary credit that differs from the one before it by more than this share
TRANSFER_WINDOW_DAYS = 90  # the window of large_transfers_90d
SECONDS_PER_DAY = 86_400


def is_salary_change(previous: float, amount: float) -> bool:
    return abs(amount - previous) > SALARY_CHANGE * previous


def fresh_account_features(activity: Mapping[str, Any], now_ts: float) -> dict[str, float | int]:
    """The account features of ``user_profile`` that the streamed ``user_activity`` row makes fresh at
    request time ``now_ts`` (epoch seconds): ``days_since_salary_change`` from ``salary_change_ts``
    (when the row knows a change) and ``large_transfers_90d`` from ``large_transfer_ts``. The row is
    batch-initialised with the same events the nightly values count, then the stream adds what came
    since, so what it gives replaces them; what it does not give leaves the nightly value."""
    fresh: dict[str, float | int] = {}
    changed = int(activity.get("salary_change_ts") or 0)
    if changed > 0:
        fresh["days_since_salary_change"] = min(NO_TIME_DAYS, max(0.0, (now_ts - changed) / SECONDS_PER_DAY))
    transfers = activity.get("large_transfer_ts")
    if transfers is not None:
        horizon = now_ts - TRANSFER_WINDOW_DAYS * SECONDS_PER_DAY
        fresh["large_transfers_90d"] = sum(1 for ts in transfers if horizon < int(ts) <= now_ts)
    return fresh
