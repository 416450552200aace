"""Logged impressions with a known truth, for the ranker's tests, experiments and benchmark.

Items have numeric features ``num_*`` (every fourth one a heavy-tailed count), categorical
features ``cat_*`` and a ``promo`` score. The true relevance -- P(click | examined) -- depends on
``num_0``, ``num_1`` and ``cat_0`` only; ``promo`` is irrelevant to users.

The logging policy ranks each request's candidates by ``logit(relevance) + promo_weight * promo +
noise``: more relevant items go higher (position and relevance are confounded) and so do promoted
items. Clicks follow the examination hypothesis, ``clicked ~ Bernoulli(examine(pos) * relevance)``
with ``examine(pos) = pos ** -examination_power``; a click converts with probability
``0.3 * relevance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PROMO = "promo"
RELEVANCE = "relevance"


@dataclass(frozen=True)
class SyntheticWorld:
    items: pd.DataFrame  # one row per item: features + true relevance
    numeric: list[str]  # includes PROMO
    categorical: list[str]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_world(n_items: int, n_numeric: int = 4, n_categorical: int = 2, cardinality: int = 12,
               seed: int = 0) -> SyntheticWorld:
    """``n_numeric`` (>= 2) ``num_*`` features plus ``promo``; ``n_categorical`` (>= 1) ``cat_*`` features."""
    if n_numeric < 2 or n_categorical < 1:
        raise ValueError("need at least 2 numeric and 1 categorical feature")
    rng = np.random.default_rng(seed)
    items: dict[str, np.ndarray] = {}
    for i in range(n_numeric):
        heavy = i % 4 == 3
        items[f"num_{i}"] = rng.lognormal(2.0, 1.5, n_items).round() if heavy else rng.normal(0.0, 1.0, n_items)
    items[PROMO] = rng.normal(0.0, 1.0, n_items)
    for j in range(n_categorical):
        items[f"cat_{j}"] = np.array([f"c{j}_{v}" for v in rng.integers(0, cardinality, n_items)], dtype=object)
    frame = pd.DataFrame(items)
    cat_effect = rng.normal(0.0, 0.8, cardinality)
    cat_codes = frame["cat_0"].str.split("_").str[1].astype(int).to_numpy()
    frame[RELEVANCE] = _sigmoid(-1.0 + 1.2 * frame["num_0"] - 0.8 * frame["num_1"] + cat_effect[cat_codes])
    numeric = [*(f"num_{i}" for i in range(n_numeric)), PROMO]
    return SyntheticWorld(frame, numeric, [f"cat_{j}" for j in range(n_categorical)])


def log_impressions(world: SyntheticWorld, n_requests: int, slate_size: int = 10, promo_weight: float = 2.0,
                    policy_noise: float = 1.0, examination_power: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """One row per impression: item features, ``request_id``, ``position`` (1-based), ``clicked``,
    ``converted`` and the true ``relevance``."""
    rng = np.random.default_rng(seed)
    items = world.items
    n_items = len(items)
    if slate_size > n_items:
        raise ValueError("slate larger than the catalog")
    rel = items[RELEVANCE].to_numpy()
    candidates = np.argsort(rng.random((n_requests, n_items)), axis=1)[:, :slate_size]
    policy = (np.log(rel / (1 - rel))[candidates] + promo_weight * items[PROMO].to_numpy()[candidates]
              + rng.normal(0.0, policy_noise, candidates.shape))
    slates = np.take_along_axis(candidates, np.argsort(-policy, axis=1), axis=1)
    shown = slates.reshape(-1)
    position = np.tile(np.arange(1, slate_size + 1), n_requests)
    clicked = rng.random(shown.size) < position.astype(float) ** -examination_power * rel[shown]
    converted = clicked & (rng.random(shown.size) < 0.3 * rel[shown])
    frame = items.iloc[shown].reset_index(names="item")
    frame["request_id"] = np.repeat(np.arange(n_requests), slate_size)
    frame["position"] = position
    frame["clicked"] = clicked.astype(np.int64)
    frame["converted"] = converted.astype(np.int64)
    return frame
