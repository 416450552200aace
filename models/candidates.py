"""Candidate generation for offline evaluation: every retriever of a bundle for a batch of users.

Each retriever returns its top-``k`` over the whole catalog through the release's own ScaNN indexes and
popularity tables (the serving path), leaving out every item the user interacted with before (the
ground truth of the evaluation leaves those out too). A list shorter than ``k`` -- no content query
for a user without history, a small catalog -- is completed with the popularity fallback, as serving
completes a slate, and then with the rest of the catalog; ``found`` counts each retriever's own items.
With a :class:`NewItemWindow`, a share of the content retriever's places goes to the items launched in
its window (:mod:`models.retrieval.new_items`), as serving does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.retrieval.data import HISTORY_LENGTH, latest_histories
from models.retrieval.export import Retrievers
from models.retrieval.new_items import NewItemIndex, NewItemSlots, with_new_items

RETRIEVERS = ("collaborative", "content", "popularity")


@dataclass(frozen=True)
class CandidateSet:
    """Per retriever: ``ids`` ``(n_users, k)`` item ids, best first; ``scores`` the retriever's score
    (NaN for padding); ``found`` how many of the ``k`` the retriever found itself."""

    user_ids: np.ndarray
    ids: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    found: dict[str, np.ndarray]
    collaborative_queries: np.ndarray  # (n_users, d) two-tower query vectors
    content_queries: np.ndarray  # (n_users, d) content preference vectors (zeros: no query)

    def merged(self, row: int) -> list[str]:
        """The union of every retriever's own candidates of one user, in first-seen order."""
        items: dict[str, None] = {}
        for name in RETRIEVERS:
            items.update(dict.fromkeys(self.ids[name][row, : self.found[name][row]].tolist()))
        return list(items)


@dataclass(frozen=True)
class NewItemWindow:
    """Items launched in ``[since_s, until_s]`` (epoch seconds) get up to ``config.share`` of the content places."""

    index: NewItemIndex
    since_s: float
    until_s: float
    config: NewItemSlots


def evaluation_histories(
    before: pd.DataFrame, user_ids: Sequence[str], length: int = HISTORY_LENGTH
) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """For the given users: recent items (newest first, at most ``length``) and every item seen before."""
    wanted = before[before["user_id"].isin(set(user_ids))]
    seen = {str(u): set(items.astype(str)) for u, items in wanted.groupby("user_id")["item_id"]}
    return latest_histories(wanted, length), seen


def _top_unseen(ids: Sequence[str], scores: np.ndarray, seen: set[str], k: int) -> tuple[list[str], list[float]]:
    keep = [i for i, item in enumerate(ids) if item not in seen][:k]
    return [ids[i] for i in keep], [float(scores[i]) for i in keep]


def _complete(items: list[str], fill: Sequence[str], k: int) -> list[str]:
    present = set(items)
    return items + [f for f in fill if f not in present][: k - len(items)]


def retrieve(
    retrievers: Retrievers,
    user_ids: Sequence[str],
    histories: Mapping[str, Sequence[str]],
    seen: Mapping[str, set[str]],
    k: int,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    segments: Mapping[str, str] | None = None,
    new_items: NewItemWindow | None = None,
) -> CandidateSet:
    """Top-``k`` of every retriever for every user (see the module docstring)."""
    catalog = retrievers.content_index.ids.tolist()
    if k > len(catalog):
        raise ValueError(f"k={k} exceeds the catalog ({len(catalog)} items)")
    ids = {name: np.empty((len(user_ids), k), dtype=object) for name in RETRIEVERS}
    scores = {name: np.full((len(user_ids), k), np.nan, dtype=np.float32) for name in RETRIEVERS}
    found = {name: np.zeros(len(user_ids), dtype=np.int64) for name in RETRIEVERS}
    content_dim = int(retrievers.description["content"]["dim"])
    collaborative_queries, content_queries = [], []
    for row, user in enumerate(map(str, user_ids)):
        history, banned = list(histories.get(user, ()))[: retrievers.history_length], seen.get(user, set())
        wide = k + len(banned)
        query = retrievers.query_embedding(user, (profiles or {}).get(user), history)
        content_query = retrievers.content_embedding(history)
        popular_ids, popular_scores = retrievers.popular((segments or {}).get(user), wide)
        results = {
            "collaborative": retrievers.collaborative_index.search_one(query, min(wide, len(catalog))),
            "content": (retrievers.content_index.search_one(content_query, min(wide, len(catalog)))
                        if content_query is not None else ([], np.zeros(0, np.float32))),
            "popularity": (popular_ids, popular_scores),
        }
        slots = new_items.config.slots(k) if new_items is not None else 0
        if slots and content_query is not None:
            new_ids, new_scores = new_items.index.search(content_query, new_items.since_s, new_items.until_s,
                                                         slots, banned)
            results["content"] = with_new_items(*_top_unseen(*results["content"], banned, k), new_ids, new_scores,
                                                k, slots)
        fallback = _complete(_top_unseen(popular_ids, popular_scores, banned, k)[0],
                             [c for c in catalog if c not in banned], k)
        for name, (found_ids, found_scores) in results.items():
            own, own_scores = _top_unseen(found_ids, found_scores, banned, k)
            found[name][row] = len(own)
            completed = _complete(own, fallback, k)
            if len(completed) < k:
                raise ValueError(f"user {user} has seen all but {len(completed)} of the catalog's items")
            ids[name][row] = completed
            scores[name][row, : len(own)] = own_scores
        collaborative_queries.append(query)
        content_queries.append(content_query if content_query is not None else np.zeros(content_dim, np.float32))
    return CandidateSet(np.asarray(user_ids, dtype=object), ids, scores, found,
                        np.asarray(collaborative_queries, np.float32).reshape(len(user_ids), -1),
                        np.asarray(content_queries, np.float32).reshape(len(user_ids), content_dim))
