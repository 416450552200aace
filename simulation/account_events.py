"""The banking world's account events: how life events show in behaviour (and only there).

Each simulated day, every customer signed up before it produces, as contract events
(:mod:`common.account_events`):

- ``card_spend``: a Poisson number of everyday payments (groceries, dining, fuel, shopping,
  utilities), plus extra payments in a life event's category while it lasts (:data:`SIGNAL`) -- ``home``
  for 60 days after moving home, ``family`` for 90 after a new child, ``travel`` from two weeks before
  a trip to a week after it; amounts are log-normal, scaled by the customer's income;
- ``salary_credit``: on the customer's pay day of the month, below the retirement age: a twelfth of
  the yearly income, raised by :data:`SALARY_RISE` for every salary rise that has happened;
- ``transfer``: one large outgoing transfer on the day the customer moves home (a deposit) or pays
  off a loan.

Nothing else in the world reveals the life events; a segment-based recommender never sees them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.account_events import MERCHANT_CATEGORIES, merchant_id, salary_account, transfer_account
from common.domains import domain as domain_config
from simulation.events import COLUMNS
from simulation.life_events import NAMES
from simulation.truth import GroundTruth
from simulation.world import US_PER_DAY

EVERYDAY = {"groceries": 0.35, "dining": 0.2, "fuel": 0.15, "shopping": 0.2, "utilities": 0.1}
EVERYDAY_RATE = 0.25  # everyday card payments per customer and day
MEAN_AMOUNT = {"groceries": 45.0, "dining": 30.0, "fuel": 55.0, "shopping": 70.0, "utilities": 90.0,
               "home": 180.0, "family": 60.0, "travel": 250.0}  # at a yearly income of 40,000
SIGNAL = {"moving_home": ("home", 0, 60, 0.5), "new_child": ("family", 0, 90, 0.5),
          "travel": ("travel", -14, 7, 0.6)}  # event -> (category, first day, last day relative to it, rate per day)
RETIREMENT_AGE = 67
SALARY_RISE = 0.15
TRANSFER_SHARE = {"moving_home": 0.3, "loan_payoff": 0.2}  # of the yearly income
assert set(MEAN_AMOUNT) == set(MERCHANT_CATEGORIES)


def _amounts(category: np.ndarray, income: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean = np.array([MEAN_AMOUNT[c] for c in category]) * np.sqrt(income / 40_000.0)
    return np.round(mean * rng.lognormal(-0.18, 0.6, size=len(category)), 2)


def account_events(truth: GroundTruth, day_us: int, rng: np.random.Generator) -> pd.DataFrame:
    """The account events of the banking world's day starting at ``day_us`` (columns of the generated events)."""
    if truth.rules is None or truth.life_at_us is None:
        return pd.DataFrame(columns=list(COLUMNS))
    prefix = domain_config(truth.domain).id_prefix
    income, age = truth.rules.applicants.income, truth.rules.applicants.age
    active = truth.signed_up_us < day_us
    parts: list[tuple[np.ndarray, str, np.ndarray, np.ndarray, np.ndarray]] = []  # user, kind, counterparty, value, at

    def card_spend(u: np.ndarray, category: np.ndarray, at: np.ndarray) -> None:
        counterparty = np.array([merchant_id(prefix, c) for c in category], dtype=object)
        parts.append((u, "card_spend", counterparty, _amounts(category, income[u], rng), at))

    counts = rng.poisson(EVERYDAY_RATE * active)  # everyday card payments
    u = np.repeat(np.arange(len(counts)), counts)
    card_spend(u, rng.choice(list(EVERYDAY), size=len(u), p=list(EVERYDAY.values())),
               day_us + rng.integers(0, US_PER_DAY, len(u)))
    # what life events add: payments in their category while they last, and large transfers on the day
    event_day = (truth.life_at_us - day_us) // US_PER_DAY  # 0: today; -3: three days ago
    known = active[truth.life_user]
    for name, (category, first, last, rate) in SIGNAL.items():
        live = np.flatnonzero((truth.life_kind == NAMES.index(name)) & (-event_day >= first) & (-event_day <= last)
                              & known)
        u = truth.life_user[live[rng.random(len(live)) < rate]]
        card_spend(u, np.full(len(u), category), day_us + rng.integers(0, US_PER_DAY, len(u)))
    for name, share in TRANSFER_SHARE.items():
        today = np.flatnonzero((truth.life_kind == NAMES.index(name)) & (event_day == 0) & known)
        u = truth.life_user[today]
        parts.append((u, "transfer", np.full(len(u), transfer_account(prefix), dtype=object),
                      np.round(share * income[u], 2), truth.life_at_us[today]))
    # salary on each customer's pay day (1..28) of the month, below the retirement age
    day_of_month = int(np.datetime64(day_us, "us").astype("datetime64[D]").astype(object).day)
    payday = (np.arange(len(income)) * 7919) % 28 + 1
    u = np.flatnonzero(active & (payday == day_of_month) & (age < RETIREMENT_AGE))
    rises = (truth.life_kind == NAMES.index("salary_rise")) & (truth.life_at_us < day_us)
    raised = np.bincount(truth.life_user[rises], minlength=len(income))[u]
    parts.append((u, "salary_credit", np.full(len(u), salary_account(prefix), dtype=object),
                  np.round(income[u] / 12.0 * (1 + SALARY_RISE) ** raised, 2), np.full(len(u), day_us + 6 * 3_600 * 1_000_000)))

    user = np.concatenate([p[0] for p in parts]).astype(np.int64)
    kind = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    counterparty = np.concatenate([p[2] for p in parts])
    value = np.concatenate([p[3] for p in parts]).astype(np.float64)
    ts = np.concatenate([p[4] for p in parts]).astype(np.int64)
    order = np.lexsort((user, ts))
    user_ids = truth.user_ids[user[order]]
    stamp = np.datetime_as_string(np.datetime64(day_us, "us"), unit="D").replace("-", "")
    return pd.DataFrame({
        "event_id": [f"{u}-{stamp}-ac{n}" for n, u in enumerate(user_ids)],
        "domain": truth.domain,
        "user_id": user_ids.astype(object),
        "item_id": counterparty[order],
        "event_type": kind[order],
        "timestamp": pd.Series(ts[order].astype("datetime64[us]")).dt.tz_localize("UTC"),
        "request_id": None, "position": pd.array([None] * len(order), dtype="Int32"),
        "session_id": None, "device": None,
        "value": value[order],
        "quantity": pd.array([None] * len(order), dtype="Int32"), "arm": None,
    })


def with_account_events(events: pd.DataFrame, account: pd.DataFrame) -> pd.DataFrame:
    """``events`` and the day's ``account`` events, in one time-ordered frame (ties by event id)."""
    if account.empty:
        return events
    both = pd.concat([events, account.astype({c: events[c].dtype for c in ("position", "quantity")})],
                     ignore_index=True)
    return both.sort_values(["timestamp", "event_id"], kind="stable", ignore_index=True)
