"""Life events of the banking world: why two customers of one segment need different products.

A customer's need for each product type is their age band's need (what a segment-based recommender
knows), plus the shifts of the life events they go through, plus a little noise. Life events --
moving home, a new child, a salary rise, travel, paying off a loan -- are drawn independently of the
segment, at yearly rates, over a window that starts :data:`LOOKBACK_DAYS` before the generated period
and runs :data:`HORIZON_DAYS` past it (so needs keep changing during a closed-loop A/B after it). Each
shifts the needs from the moment it happens, for good, and shows only through behaviour: the account
events it causes (:mod:`simulation.account_events`).

Calibration, a stated assumption fixed before any A/B run (never tuned to make a recommender win):

* :data:`WITHIN_SEGMENT_SHARE` = 0.5 -- half the variance of needs (averaged over product types) lies
  inside the segments (age band x income band), at the end of the generated period;
* :data:`LIFE_EVENT_SHARE` = 0.7 -- of that within-segment variance, 70% comes from life events (what
  a model can learn from behaviour), 30% from idiosyncratic noise no signal reveals.

:func:`calibration` derives the scale of the shifts and the noise from these two numbers, the
between-segment variance of ``NEED_BY_AGE`` and the expected number of events in the window
(a Poisson count of each kind adds ``rate * years * shift**2`` of variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.banking_products import AGE_SHARE, NEED_BY_AGE, PRODUCT_TYPES
from simulation.world import US_PER_DAY

WITHIN_SEGMENT_SHARE = 0.5
LIFE_EVENT_SHARE = 0.7
LOOKBACK_DAYS = 60  # events this long before the generated period have already shifted needs at its start
HORIZON_DAYS = 120  # events keep coming this long after it (a closed loop runs there)


@dataclass(frozen=True)
class LifeEvent:
    name: str
    yearly_rate: float  # expected occurrences per customer per year
    need_shift: tuple[float, ...]  # per PRODUCT_TYPES, before calibration scaling


LIFE_EVENTS = (  # need shift per (credit_card, personal_loan, mortgage, savings, insurance)
    LifeEvent("moving_home", 0.6, (0.2, 0.6, 1.6, -0.4, 0.8)),
    LifeEvent("new_child", 0.3, (0.0, 0.4, 0.6, 1.0, 1.4)),
    LifeEvent("salary_rise", 0.8, (0.6, -0.3, 0.5, 0.9, 0.2)),
    LifeEvent("travel", 1.2, (1.2, 0.0, 0.0, -0.2, 0.6)),
    LifeEvent("loan_payoff", 0.4, (0.2, -1.2, 0.0, 0.8, 0.0)),
)
NAMES = tuple(event.name for event in LIFE_EVENTS)
SHIFTS = np.array([event.need_shift for event in LIFE_EVENTS], dtype=np.float64)  # (kinds, product types)
assert SHIFTS.shape[1] == len(PRODUCT_TYPES)


def between_segment_variance() -> float:
    """Variance of the age bands' needs, weighted by the bands' shares, averaged over product types."""
    needs, share = np.array(NEED_BY_AGE), np.array(AGE_SHARE)
    mean = share @ needs
    return float((share @ (needs - mean) ** 2).mean())


def calibration(period_days: int) -> tuple[float, float]:
    """``(shift scale, noise sd)`` that give :data:`WITHIN_SEGMENT_SHARE` and :data:`LIFE_EVENT_SHARE` at the
    end of a generated period of ``period_days`` days."""
    within = between_segment_variance() * WITHIN_SEGMENT_SHARE / (1.0 - WITHIN_SEGMENT_SHARE)
    years = (LOOKBACK_DAYS + period_days) / 365.0
    event_variance = float(np.sum([e.yearly_rate * years * np.square(e.need_shift) for e in LIFE_EVENTS], axis=0).mean())
    scale = float(np.sqrt(LIFE_EVENT_SHARE * within / event_variance))
    noise = float(np.sqrt((1.0 - LIFE_EVENT_SHARE) * within))
    return scale, noise


@dataclass(frozen=True)
class LifeEventDraws:
    """Every life event of the window, by time: who, which kind (index into :data:`LIFE_EVENTS`), when."""

    user: np.ndarray  # int64 user index
    kind: np.ndarray  # int16
    at_us: np.ndarray  # int64 epoch microseconds


def draw_life_events(n_users: int, start_us: int, period_days: int, rng: np.random.Generator) -> LifeEventDraws:
    """Poisson counts per customer and kind over the window, at uniform times within it."""
    first = start_us - LOOKBACK_DAYS * US_PER_DAY
    span_days = LOOKBACK_DAYS + period_days + HORIZON_DAYS
    rates = np.array([e.yearly_rate for e in LIFE_EVENTS]) * span_days / 365.0
    counts = rng.poisson(rates, size=(n_users, len(LIFE_EVENTS)))
    user, kind = np.nonzero(counts)
    repeat = counts[user, kind]
    user, kind = np.repeat(user, repeat), np.repeat(kind, repeat)
    at = first + rng.integers(0, span_days * US_PER_DAY, size=len(user))
    order = np.argsort(at, kind="stable")
    return LifeEventDraws(user[order].astype(np.int64), kind[order].astype(np.int16), at[order].astype(np.int64))


def within_segment_share(needs: np.ndarray, segments: np.ndarray) -> float:
    """The share of the variance of ``needs`` (users x types, averaged over types) inside ``segments``."""
    total = needs.var(axis=0).mean()
    means = np.zeros((segments.max() + 1, needs.shape[1]))
    np.add.at(means, segments, needs)
    means /= np.maximum(np.bincount(segments, minlength=len(means)), 1)[:, None]
    within = ((needs - means[segments]) ** 2).mean(axis=0).mean()
    return float(within / total)
