"""Account events: what a bank's core system says about a customer, beside what they do in the app.

Card payments (``card_spend``), salary credits (``salary_credit``) and large transfers (``transfer``)
are events of the contract like any other (:data:`common.schemas.EVENT_TYPES`), declared per domain in
``account_events`` of ``config/domains.yaml``. Their ``item_id`` names a counterparty, not a catalog
item: a merchant category (``<prefix>mcc_<category>``), the salary account (``<prefix>acct_salary``) or
the outgoing-transfer account (``<prefix>xfer_out``); ``value`` is the amount. Every item-based
consumer (retrieval, popularity, histories, item statistics) leaves them out
(:func:`common.domains.DomainConfig.item_event_types`); the account features read them.
"""

from __future__ import annotations

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
