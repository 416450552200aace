"""The legacy logging policy that chose the slates in the generated logs.

It is what a pre-ML shop would run: per demographic segment, a popularity score per item (clicks
and conversions seen in that segment, decayed daily, plus a share of global popularity, seeded
from the shop's pre-history). A slate's items are a Plackett-Luce sample (without replacement) of the
segment's candidate pool, proportional to popularity ** sharpness, shown best score first (as a
ranking system shows them: ``order="score"``; ``order="sampled"`` keeps the draw order, which is
nearly independent of the items); then each slot is, with probability ``explore_rate``, replaced by
an item drawn uniformly from the available catalog, which stays in that slot. Ordering by its own
score is what makes the log carry the position bias real logs carry: the items the policy believed
in (and that, through the segment's popularity, are more often relevant) sit in the slots that are
examined most, so position and relevance are confounded.
It knows nothing about stock or banking eligibility. What it used for every impression is
recorded (exploration flag and the item's popularity share in the segment) beside the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from simulation.truth import GroundTruth, sigmoid


@dataclass(frozen=True)
class PolicyConfig:
    explore_rate: float = 0.1  # per-slot probability of a uniformly random available item
    pool_share: float = 0.2  # candidate pool = this share of the available catalog, by popularity
    min_pool: int = 20
    max_pool: int = 1000
    sharpness: float = 0.6  # slates sample items proportionally to popularity ** sharpness
    global_weight: float = 0.5  # weight of global popularity in a segment's score
    decay: float = 0.9  # daily decay of the popularity counts
    prior_mass: float = 30.0  # pseudo-interactions per item from the pre-history
    conversion_weight: float = 4.0  # a purchase / approval counts this many clicks
    order: Literal["score", "sampled"] = "score"  # slot order: the segment score, or the sampling order

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass
class SlateBatch:
    items: np.ndarray  # (n, k) item indices
    explored: np.ndarray  # (n, k) bool: uniformly random slot
    popularity_share: np.ndarray  # (n, k) the item's share of its segment's popularity score


def _first_distinct(draws: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` distinct values in draw order, and which rows had ``k`` of them."""
    order = np.argsort(draws, axis=1, kind="stable")
    ordered = np.take_along_axis(draws, order, axis=1)
    new = np.ones(draws.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.empty_like(new)
    np.put_along_axis(first, order, new, axis=1)
    keep = first & (np.cumsum(first, axis=1) <= k)
    complete = keep.sum(axis=1) == k
    return draws[keep & complete[:, None]].reshape(-1, k), complete


def _plackett_luce(prob: np.ndarray, segments: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``k`` distinct pool columns per request in order, proportionally to ``prob[segment]``.

    Drawing with replacement and skipping repeats is exactly sampling without replacement
    (Plackett-Luce); rows without ``k`` distinct values yet extend their sequence of draws.
    """
    n_segments, pool = prob.shape
    cdf = np.cumsum(prob, axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(n_segments)[:, None]).ravel()  # segment s occupies (s, s + 1]
    out = np.empty((len(segments), k), dtype=np.int64)
    todo, drawn = np.arange(len(segments)), np.empty((len(segments), 0), dtype=np.int64)
    while len(todo):
        u = segments[todo][:, None] + rng.random((len(todo), 3 * k))
        index = np.clip(np.searchsorted(flat, u), segments[todo][:, None] * pool, flat.size - 1)
        drawn = np.hstack([drawn, index % pool])
        values, complete = _first_distinct(drawn, k)
        out[todo[complete]] = values
        todo, drawn = todo[~complete], drawn[~complete]
    return out


def by_score_keeping_explored(columns: np.ndarray, scores: np.ndarray, explored: np.ndarray) -> np.ndarray:
    """Each row's non-explored entries re-ordered by ``scores``, best first, into the non-explored slots
    (in slot order); explored entries stay in their slots. Ties keep the sampling order."""
    slots = np.argsort(explored, axis=1, kind="stable")  # non-explored slots first, in slot order
    best_first = np.argsort(np.where(explored, np.inf, -scores), axis=1, kind="stable")  # explored last, in order
    out = np.empty_like(columns)
    np.put_along_axis(out, slots, np.take_along_axis(columns, best_first, axis=1), axis=1)
    return out


class LoggingPolicy:
    def __init__(self, truth: GroundTruth, start_us: int, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        n_segments = len(truth.segment_names)
        # Pre-history: each segment's average member's true click rate on items launched before the start.
        centroid = np.zeros((n_segments, truth.user_vec.shape[1]))
        np.add.at(centroid, truth.user_segment, truth.user_vec)
        centroid /= np.maximum(np.bincount(truth.user_segment, minlength=n_segments), 1)[:, None]
        rate = sigmoid(truth.params["alpha"] + centroid @ truth.item_vec.T + truth.item_bias)
        self.counts = self.config.prior_mass * rate * (truth.launched_us < start_us)

    def slates(self, segments: np.ndarray, available: np.ndarray, k: int, rng: np.random.Generator) -> SlateBatch:
        """One slate of ``k`` available items per request, for requests from the given segments."""
        cfg = self.config
        candidates = np.flatnonzero(available)
        if len(candidates) < k:
            raise ValueError(f"only {len(candidates)} items are available, fewer than a slate of {k}")
        counts = self.counts[:, candidates]
        scores = counts + cfg.global_weight * counts.mean(axis=0) + 1e-6
        pool = int(np.clip(cfg.pool_share * len(candidates), max(cfg.min_pool, k), cfg.max_pool))
        pool = min(pool, len(candidates))
        top = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]  # (segments, pool) columns of candidates
        weight = np.take_along_axis(scores, top, axis=1) ** cfg.sharpness
        picked = _plackett_luce(weight / weight.sum(axis=1, keepdims=True), segments, k, rng)
        columns = np.take_along_axis(top[segments], picked, axis=1)

        explore = rng.random(columns.shape) < cfg.explore_rate
        random_cols = rng.integers(0, len(candidates), size=columns.shape)
        clash = (random_cols[:, :, None] == columns[:, None, :]).any(axis=2)
        earlier = np.tril((random_cols[:, :, None] == random_cols[:, None, :]) & explore[:, None, :], k=-1).any(axis=2)
        explore &= ~clash & ~earlier
        columns = np.where(explore, random_cols, columns)
        slot_scores = scores[segments[:, None], columns]
        if cfg.order == "score":
            columns = by_score_keeping_explored(columns, slot_scores, explore)
            slot_scores = scores[segments[:, None], columns]
        share = slot_scores / scores.sum(axis=1)[segments][:, None]
        return SlateBatch(items=candidates[columns], explored=explore, popularity_share=share)

    def update(self, segments: np.ndarray, items: np.ndarray, weights: np.ndarray) -> None:
        """End of day: decay the counts, then add the day's clicks and conversions per segment."""
        self.counts *= self.config.decay
        np.add.at(self.counts, (segments, items), weights)
