"""How users respond to what they are shown -- usable on any slates, not only the logged ones.

:func:`respond` takes served slates (item ids per request, best slot first) and returns the events
the users produce: impressions, clicks with the known position bias (a slot is examined with
probability ``truth.examination(position)``, an examined item is clicked with its true relevance),
views, and then the domain's funnel -- retail: add to cart, purchase (with quantity and basket
value), or a dismissal (``decline``) of an examined low-relevance item; banking: application,
then approval or refusal (``decline``), never an approval of an ineligible applicant. The world
remembers what it sold / approved (``truth`` is updated), as the next slates must see it.

A closed-loop A/B simulation calls :func:`respond` with the platform's slates and its own
request ids; the generator adds slate responses and organic views to one :class:`EventBuffer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simulation.events import EventBuffer, Rows
from simulation.truth import GroundTruth

S = 1_000_000  # microseconds per second
CLICK_DELAY_S, CLICK_DELAY_MAX_S = 8.0, 120.0
CART_DELAY_S = (20, 180)
PURCHASE_DELAY_S = (60, 600)
APPLICATION_DELAY_S = (60, 300)
DECISION_DELAY_S = (30, 600)
ORGANIC_WINDOW_S = 1_200
ORGANIC_CANDIDATES = 20
QUANTITY_RATE_CHEAP, QUANTITY_RATE = 0.5, 0.15
MAX_QUANTITY = 6


@dataclass
class SlateContext:
    """Per slate request: its id, session, device, time (epoch microseconds) and optional experiment arm."""

    request_ids: np.ndarray
    session_ids: np.ndarray
    devices: np.ndarray
    timestamps_us: np.ndarray
    arms: np.ndarray | None = None

    @classmethod
    def build(cls, request_ids: Sequence[str], session_ids: Sequence[str], devices: Sequence[str],
              timestamps: Any, arms: Sequence[str] | None = None) -> SlateContext:
        """``timestamps``: anything ``pd.to_datetime`` understands (naive means UTC)."""
        ts = pd.to_datetime(pd.Series(np.asarray(timestamps)), utc=True)
        return cls(np.asarray(request_ids, dtype=str), np.asarray(session_ids, dtype=str),
                   np.asarray(devices, dtype=str), ts.astype("datetime64[us, UTC]").astype("int64").to_numpy(),
                   None if arms is None else np.asarray(arms, dtype=str))


def _seconds(rng: np.random.Generator, bounds: tuple[int, int], n: int) -> np.ndarray:
    return (rng.uniform(*bounds, size=n) * S).astype(np.int64)


def _quantity_rate(truth: GroundTruth, items: np.ndarray) -> np.ndarray:
    """Cheap items are bought in bigger quantities: quantity = 1 + min(Poisson(rate), MAX_QUANTITY - 1)."""
    return np.where(truth.price_term[items] < -0.4, QUANTITY_RATE_CHEAP, QUANTITY_RATE)


def _retail_funnel(truth: GroundTruth, buf: EventBuffer, viewed: Rows, rng: np.random.Generator) -> None:
    u, i = viewed.users, viewed.items
    cart = rng.random(len(viewed)) < truth.cart_probability_idx(u, i)
    carted = viewed.take(cart)
    carted = carted.at(carted.ts_us + _seconds(rng, CART_DELAY_S, len(carted)))
    buf.add("add_to_cart", carted)
    buy = rng.random(len(carted)) < truth.checkout_probability_idx(carted.users, carted.items)
    bought = carted.take(buy)
    bought = bought.at(bought.ts_us + _seconds(rng, PURCHASE_DELAY_S, len(bought)))
    # no repurchase: within this batch too, only the first purchase of a (user, item) pair happens
    keys = bought.users.astype(np.int64) * len(truth.item_ids) + bought.items
    order = np.argsort(bought.ts_us, kind="stable")
    _, first = np.unique(keys[order], return_index=True)
    bought = bought.take(np.sort(order[first]))
    quantity = 1 + np.minimum(rng.poisson(_quantity_rate(truth, bought.items)), MAX_QUANTITY - 1)
    buf.add("purchase", bought, value=np.round(truth.price[bought.items] * quantity, 2), quantity=quantity)
    truth.record_purchases(bought.users, bought.items)


def _banking_funnel(truth: GroundTruth, buf: EventBuffer, viewed: Rows, rng: np.random.Generator) -> None:
    u, i = viewed.users, viewed.items
    applied = viewed.take(rng.random(len(viewed)) < truth.application_probability_idx(u, i))
    applied = applied.at(applied.ts_us + _seconds(rng, APPLICATION_DELAY_S, len(applied)))
    buf.add("application_start", applied)
    approve = rng.random(len(applied)) < truth.approval_probability_idx(applied.users, applied.items)
    # Decisions in time order against the live holdings: an approval earlier in this batch may
    # make a later application ineligible (same product, or an excluding one).
    rules = truth.rules
    assert rules is not None
    for k in np.flatnonzero(approve)[np.argsort(applied.ts_us[approve], kind="stable")]:
        user, item = applied.users[k], applied.items[k]
        if truth.held[user, item] or (truth.held[user] & rules.excluded_by[item]).any():
            approve[k] = False
        else:
            truth.record_approvals(np.array([user]), np.array([item]))
    decided = applied.at(applied.ts_us + _seconds(rng, DECISION_DELAY_S, len(applied)))
    buf.add("application_approved", decided.take(approve))
    buf.add("decline", decided.take(~approve))


def _funnel(truth: GroundTruth, buf: EventBuffer, viewed: Rows, rng: np.random.Generator) -> None:
    if truth.domain == "retail":
        _retail_funnel(truth, buf, viewed, rng)
    else:
        _banking_funnel(truth, buf, viewed, rng)


def add_slate_responses(buf: EventBuffer, users: np.ndarray, slates: np.ndarray, context: SlateContext,
                        rng: np.random.Generator, include_impressions: bool = True) -> None:
    """Add to ``buf`` the events of ``users`` (n,) shown ``slates`` (n, k) of item indices (-1 = empty slot)."""
    truth = buf.truth
    row, col = np.nonzero(slates >= 0)
    position = col + 1
    stems = np.char.add(np.char.add(context.request_ids[row], "-"), np.char.zfill(position.astype(str), 2))
    slots = Rows(users=users[row], items=slates[row, col], ts_us=context.timestamps_us[row], stem=stems,
                 session_id=context.session_ids[row], device=context.devices[row],
                 request_id=context.request_ids[row], position=position,
                 arm=None if context.arms is None else context.arms[row])
    if include_impressions:
        buf.add("impression", slots)
    examined = rng.random(len(slots)) < truth.examination(position)
    relevance = truth.relevance_idx(slots.users, slots.items)
    click = examined & (rng.random(len(slots)) < relevance)
    delay = np.minimum(rng.exponential(CLICK_DELAY_S * position), CLICK_DELAY_MAX_S) + 1.0
    clicked = slots.take(click)
    clicked = clicked.at(clicked.ts_us + (delay[click] * S).astype(np.int64))
    buf.add("click", clicked)
    viewed = clicked.at(clicked.ts_us + _seconds(rng, (1, 3), len(clicked)))
    buf.add("view", viewed)
    if truth.domain == "retail":
        dismiss = examined & ~click & (rng.random(len(slots)) < truth.decline_probability_idx(slots.users, slots.items))
        dismissed = slots.take(dismiss)
        buf.add("decline", dismissed.at(dismissed.ts_us + (delay[dismiss] * S).astype(np.int64)))
    _funnel(truth, buf, viewed, rng)


def respond(truth: GroundTruth, user_ids: Sequence[str], slates: Sequence[Sequence[str]], context: SlateContext,
            rng: np.random.Generator, include_impressions: bool = True) -> pd.DataFrame:
    """Events of the users shown ``slates`` (one list of item ids per request, best slot first; ragged
    lists are allowed). Returns a DataFrame in the event contract's columns, ordered by time."""
    width = max((len(s) for s in slates), default=0)
    padded = np.full((len(slates), width), -1, dtype=np.int64)
    for r, slate in enumerate(slates):
        padded[r, : len(slate)] = truth.item_index(list(slate))
    buf = EventBuffer(truth)
    add_slate_responses(buf, truth.user_index(np.asarray(user_ids)), padded, context, rng, include_impressions)
    return buf.frame()


def add_organic_views(buf: EventBuffer, session_users: np.ndarray, session_ids: np.ndarray, devices: np.ndarray,
                      session_start_us: np.ndarray, views_per_session: np.ndarray, popularity: np.ndarray,
                      rng: np.random.Generator) -> None:
    """Views users find by themselves (search, browsing): per view, ``ORGANIC_CANDIDATES`` items are
    drawn by ``popularity`` (zero = unavailable) and the user opens one with probability
    proportional to its relevance; the domain's funnel follows."""
    truth = buf.truth
    session = np.repeat(np.arange(len(session_users)), views_per_session)
    n = len(session)
    if n == 0:
        return
    users = session_users[session]
    candidates = rng.choice(len(popularity), size=(n, ORGANIC_CANDIDATES), p=popularity / popularity.sum())
    weight = truth.relevance_idx(users[:, None], candidates)
    pick = (np.log(weight) + rng.gumbel(size=weight.shape)).argmax(axis=1)
    nth = np.arange(n) - np.r_[0, np.cumsum(views_per_session)[:-1]].repeat(views_per_session)
    viewed = Rows(users=users, items=candidates[np.arange(n), pick],
                  ts_us=session_start_us[session] + _seconds(rng, (0, ORGANIC_WINDOW_S), n),
                  stem=np.char.add(np.char.add(session_ids[session], "-o"), nth.astype(str)),
                  session_id=session_ids[session], device=devices[session])
    buf.add("view", viewed)
    _funnel(truth, buf, viewed, rng)
