"""Beyond-accuracy metrics of the slates actually served: catalog coverage, novelty, serendipity and
intra-list diversity, computed with the offline evaluation's metric functions
(:mod:`models.evaluation.metrics`) on the logged impressions of one group (an arm, an arm and a day).

- coverage: share of the catalog shown at least once;
- novelty: mean self-information ``-log2 p(i)`` of the shown items, ``p(i)`` = share of the reference
  users who interacted with ``i``;
- serendipity: per slate, the share of slots that were clicked AND are not in the popularity top-K
  (what a primitive recommender would have shown), averaged over slates;
- intra-list diversity: mean pairwise ``1 - cos`` of the items' taxonomy vectors (multi-hot of every
  category prefix, so items sharing a deeper category are more similar), averaged over slates.

Slates of different lengths are evaluated per length and averaged with slate-count weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation.metrics import (
    catalog_coverage,
    intra_list_diversity,
    novelty,
    self_information,
    serendipity,
)

SLATE_METRICS = ("slates", "coverage", "novelty", "serendipity", "intra_list_diversity")
NAN = float("nan")


def category_prefixes(category: str | None) -> list[str]:
    """``"A>B>C"`` -> ``["A", "A>B", "A>B>C"]`` (empty for a missing category)."""
    if not category:
        return []
    levels = [part.strip() for part in category.split(">")]
    return [">".join(levels[: i + 1]) for i in range(len(levels))]


@dataclass(frozen=True)
class SlateReference:
    """What the slate metrics compare against, indexed by item: the catalog first, then items known
    only from the reference interactions, then one row standing for every other (unknown) item."""

    items: pd.Index  # item ids of every row but the last (the unknown item)
    n_catalog: int
    information: np.ndarray  # self-information per row (bits); the unknown item was never interacted with
    features: sp.csr_matrix  # taxonomy multi-hot per row (the unknown item has none)
    popular: np.ndarray  # rows by reference popularity, most popular first (without the unknown row)

    @classmethod
    def build(cls, catalog: Mapping[str, str | None], user_counts: Mapping[str, int], n_users: int) -> SlateReference:
        """``catalog``: item id -> category path; ``user_counts``: item id -> reference users who
        interacted with it (out of ``n_users``)."""
        known = list(catalog)
        items = pd.Index(known + sorted(set(user_counts) - set(catalog)))
        counts = np.array([user_counts.get(i, 0) for i in items] + [0], dtype=np.float64)
        tokens = [category_prefixes(catalog.get(i)) for i in items] + [[]]
        vocabulary = {t: j for j, t in enumerate(sorted({t for row in tokens for t in row}))}
        rows = np.repeat(np.arange(len(tokens)), [len(row) for row in tokens])
        cols = np.array([vocabulary[t] for row in tokens for t in row], dtype=np.int64)
        features = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(tokens), max(1, len(vocabulary))))
        popular = np.lexsort((np.arange(len(items)), -counts[:-1]))
        return cls(items, len(known), self_information(counts, max(n_users, 0)), features, popular)

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each item id; unknown items share the last row."""
        rows = self.items.get_indexer(item_ids)
        return np.where(rows < 0, len(self.items), rows)


def slate_metrics(impressions: pd.DataFrame, reference: SlateReference) -> dict[str, float]:
    """The metrics of the slates in ``impressions`` (columns ``request_id``, ``position``, ``item_id``,
    ``clicked``; one row per shown slot)."""
    if impressions.empty:
        return {"slates": 0.0, **{m: NAN for m in SLATE_METRICS[1:]}}
    ordered = impressions.sort_values(["request_id", "position"], kind="stable")
    items = reference.rows_of(ordered["item_id"].to_numpy())
    clicked = ordered["clicked"].to_numpy().astype(bool)
    slate_codes = pd.factorize(ordered["request_id"], sort=False)[0]
    lengths = np.bincount(slate_codes)
    row_length = lengths[slate_codes]
    shown_catalog = items[items < reference.n_catalog]
    coverage = catalog_coverage(shown_catalog[:, None], reference.n_catalog, 1) if reference.n_catalog else NAN
    weighted: dict[str, list[tuple[float, int]]] = {"serendipity": [], "intra_list_diversity": []}
    for k in np.unique(lengths):
        recs = items[row_length == k].reshape(-1, k)
        hits = clicked[row_length == k].reshape(-1, k)
        top = np.full(k, len(reference.items) + 1, dtype=np.int64)  # padding: a row no item has
        top[: min(k, len(reference.popular))] = reference.popular[:k]
        expected = np.broadcast_to(top, recs.shape)
        weighted["serendipity"].append((serendipity(recs, hits, expected, k), len(recs)))
        if k >= 2:
            weighted["intra_list_diversity"].append((intra_list_diversity(recs, reference.features, k), len(recs)))
    out = {
        "slates": float(len(lengths)),
        "coverage": coverage,
        "novelty": novelty(items[:, None], reference.information, 1),
    }
    for name, parts in weighted.items():
        total = sum(n for _, n in parts)
        out[name] = sum(v * n for v, n in parts) / total if total else NAN
    return out
