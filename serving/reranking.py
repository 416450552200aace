"""Re-ranking: from ranked candidates to a slate of exactly k valid, distinct, diverse items.

Pure functions over the catalog arrays, the ranked candidates and the user; the steps, in order:

1. hard filters (:mod:`serving.eligibility`) -- never traded for score;
2. bounded commercial boosts -- a boost is a lift in *rank positions*, so a boosted item moves up
   at most ``max_rank_lift`` places (and any other item moves down at most that many);
3. back-fill -- eligible popular items, then the rest of the eligible catalog, after the candidates;
4. diversity -- a cap per product line (taxonomy level), relaxed only if the eligible catalog
   cannot fill k slots otherwise;
5. exploration -- a share of the slots (never before ``min_position``) replaced by random items
   from product lines outside the user's profile and the slate, each with its logged propensity.

Propensities are exact for this policy: a slot in the exploration range holds an exploration item
with probability ``n/R`` (``n`` of the ``R`` range slots are drawn uniformly) and a given pool item
with ``n/R * 1/M`` (``M`` pool items, drawn uniformly without replacement); an exploited item shown
in the range had probability ``1 - n/R``; before the range it is certain (1.0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serving.catalog import CatalogIndex, category_at
from serving.eligibility import UserContext, eligible_mask, removal_counts, removal_masks
from serving.settings import BoostRules, ExplorationRules, RerankRules

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class RetrieverScores(Sequence[Mapping[str, float]]):
    """Per candidate, the retrievers that proposed it and their scores, as arrays.

    A request merges ~500 candidates but reads the provenance of the ~10 it serves: a mapping is
    built only when one is read. ``scores[i, j]`` is retriever ``names[j]``'s score for candidate
    ``i``, meaningful where ``proposed[i, j]``.
    """

    names: tuple[str, ...]
    scores: np.ndarray  # float64 [candidates, retrievers]
    proposed: np.ndarray  # bool, same shape

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]  (Sequence's overloads: int or slice)
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        return {name: score for name, score, there in
                zip(self.names, self.scores[index].tolist(), self.proposed[index].tolist(), strict=True) if there}

    def take(self, order: np.ndarray) -> RetrieverScores:
        return RetrieverScores(self.names, self.scores[order], self.proposed[order])


def reorder(provenance: Sequence[Mapping[str, float]], order: np.ndarray) -> Sequence[Mapping[str, float]]:
    """``provenance`` in ``order`` (lazily for :class:`RetrieverScores`)."""
    if isinstance(provenance, RetrieverScores):
        return provenance.take(order)
    return tuple(map(provenance.__getitem__, order.tolist()))


@dataclass(frozen=True)
class Candidates:
    """Merged candidates in ranked order (best first): catalog rows, scores, provenance."""

    rows: np.ndarray  # int64, distinct
    scores: np.ndarray  # float64, aligned with rows
    provenance: Sequence[Mapping[str, float]]  # per row: retriever -> its score for the row


@dataclass(frozen=True)
class SlateItem:
    item_id: str
    row: int
    score: float | None  # None for items that were not candidates (back-fill, exploration)
    retrievers: Mapping[str, float]  # which retrievers proposed it, with their scores (empty: not retrieved)
    reasons: tuple[str, ...]
    propensity: float  # probability this policy shows this item in this slot


@dataclass(frozen=True)
class Slate:
    items: tuple[SlateItem, ...]
    removed: dict[str, int]  # candidates removed per hard-filter rule


def boost_lifts(
    catalog: CatalogIndex, rows: np.ndarray, rules: BoostRules, now_ts: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the lift in positions (capped) and whether the margin / newness boost applies."""
    margin = catalog.margin[rows] >= rules.high_margin
    age = now_ts - catalog.launched_ts[rows]
    new = (age >= 0) & (age <= rules.new_days * DAY_SECONDS)
    lifts = rules.margin_lift * margin.astype(np.int64) + rules.new_lift * new.astype(np.int64)
    return np.minimum(lifts, rules.max_rank_lift), margin & (rules.margin_lift > 0), new & (rules.new_lift > 0)


def bounded_boost_order(lifts: np.ndarray) -> np.ndarray:
    """Permutation of positions ordered by ``position - lift`` (ties: larger lift, then original order).

    An item with lift ``l`` moves up ``l`` places (fewer near the top or past other boosted items),
    never more; at most ``max(lifts)`` items pass any item, so none moves down further than that.
    """
    positions = np.arange(len(lifts))
    return np.lexsort((positions, -lifts, positions - lifts))


def diversify(pool: np.ndarray, codes: np.ndarray, k: int, cap: int) -> tuple[list[int], list[bool]]:
    """Pick k pool indices walking in pool order, at most ``cap`` per product line.

    Returns the picked indices in slate order and, per pick, whether it was promoted over a
    deferred item of a full product line. If the pool cannot fill k slots within the caps, the
    deferred items fill the remaining slots (so the slate is still exactly k).
    """
    counts: dict[int, int] = {}
    picked: list[int] = []
    promoted: list[bool] = []
    deferred: list[int] = []
    for index, row in enumerate(pool):
        if len(picked) == k:
            break
        code = int(codes[row])
        if counts.get(code, 0) < cap:
            counts[code] = counts.get(code, 0) + 1
            picked.append(index)
            promoted.append(bool(deferred))
        else:
            deferred.append(index)
    fill = deferred[: k - len(picked)]
    return picked + fill, promoted + [False] * len(fill)


def diversity_cap(k: int, max_share: float) -> int:
    return max(1, math.ceil(max_share * k - 1e-9))


def _pool(
    candidate_rows: np.ndarray, backfill_rows: np.ndarray, eligible: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Eligible candidates, then eligible back-fill, then the rest of the eligible catalog (distinct).

    Returns the pool and where the popularity and catalog back-fill parts start.
    """
    seen = ~eligible
    parts = []
    for rows in (candidate_rows, backfill_rows):
        rows = rows[~seen[rows]]
        rows = rows[np.sort(np.unique(rows, return_index=True)[1])]
        seen[rows] = True
        parts.append(rows)
    parts.append(np.flatnonzero(~seen))
    return np.concatenate(parts), len(parts[0]), len(parts[0]) + len(parts[1])


def _explore(
    slate_rows: list[int],
    eligible: np.ndarray,
    codes: np.ndarray,
    profile_codes: set[int],
    k: int,
    cap: int,
    rules: ExplorationRules,
    rng: np.random.Generator,
) -> tuple[dict[int, int], float, float]:
    """Draw the exploration slots and items: {slot: row}, P(slot is exploration), P(item in slot)."""
    span = len(slate_rows) - rules.min_position
    wanted = min(math.floor(rules.share * k + 1e-9), span, cap)
    if wanted <= 0:
        return {}, 0.0, 0.0
    outside = np.array(sorted(profile_codes | {int(codes[r]) for r in slate_rows}), dtype=np.int64)
    allowed = eligible.copy()
    allowed[slate_rows] = False
    pool = np.flatnonzero(allowed & ~np.isin(codes, outside))
    n = min(wanted, len(pool))
    if n == 0:
        return {}, 0.0, 0.0
    slots = rng.choice(np.arange(rules.min_position, len(slate_rows)), size=n, replace=False)
    items = rng.choice(pool, size=n, replace=False)
    return dict(zip(slots.tolist(), items.tolist(), strict=True)), n / span, n / span / len(pool)


def _positions(rows: np.ndarray, wanted: list[int]) -> dict[int, int]:
    """Position in ``rows`` (distinct) of each wanted row that is there; a few look-ups, no full index."""
    out = {}
    for row in wanted:
        hit = np.flatnonzero(rows == row)
        if len(hit):
            out[row] = int(hit[0])
    return out


def rerank(
    candidates: Candidates,
    catalog: CatalogIndex,
    user: UserContext,
    rules: RerankRules,
    k: int,
    *,
    in_stock: np.ndarray,
    backfill_rows: np.ndarray,
    now_ts: float,
    rng: np.random.Generator,
    exclude: Iterable[str] = (),
) -> Slate:
    """The slate for one request: exactly ``k`` items whenever the eligible catalog has ``k``."""
    masks = removal_masks(catalog, user, rules.filters, in_stock, exclude)
    eligible = eligible_mask(masks, len(catalog))
    kept = np.flatnonzero(eligible[candidates.rows])
    rows, scores = candidates.rows[kept], candidates.scores[kept]

    lifts, margin, new = boost_lifts(catalog, rows, rules.boost, now_ts)
    order = bounded_boost_order(lifts)
    rows, lifts, margin, new = rows[order], lifts[order], margin[order], new[order]
    scores, source = scores[order], kept[order]  # source: index into ``candidates`` (for provenance)

    pool, popular_start, catalog_start = _pool(rows, backfill_rows, eligible)
    codes, vocabulary = catalog.category_codes(rules.diversity.category_level)
    cap = diversity_cap(k, rules.diversity.max_share)
    picked, promoted = diversify(pool, codes, k, cap)
    slate_rows = [int(pool[i]) for i in picked]

    level = rules.diversity.category_level
    profile = {vocabulary[key] for key in {category_at(c, level) for c in user.categories} if key in vocabulary}
    explored, p_slot, p_item = _explore(slate_rows, eligible, codes, profile, k, cap, rules.exploration, rng)
    candidate_index = _positions(rows, [explored.get(slot, row) for slot, row in enumerate(slate_rows)])

    items = []
    for slot, (index, was_promoted) in enumerate(zip(picked, promoted, strict=True)):
        row = explored.get(slot, slate_rows[slot])
        at = candidate_index.get(row)
        reasons: list[str] = []
        if slot in explored:
            reasons.append("exploration")
            propensity = p_item
        else:
            propensity = 1.0 - p_slot if slot >= rules.exploration.min_position else 1.0
            if index >= catalog_start:
                reasons.append("backfill:catalog")
            elif index >= popular_start:
                reasons.append("backfill:popularity")
            if was_promoted:
                reasons.append("diversity")
        if at is not None and slot not in explored:
            reasons += [name for name, on in (("boost:margin", margin[at]), ("boost:new", new[at])) if on]
        items.append(
            SlateItem(
                item_id=str(catalog.item_ids[row]),
                row=row,
                score=None if at is None else float(scores[at]),
                retrievers={} if at is None else dict(candidates.provenance[source[at]]),
                reasons=tuple(reasons),
                propensity=float(propensity),
            )
        )
    return Slate(items=tuple(items), removed=removal_counts(masks, candidates.rows))
