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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.retrieval.data import HISTORY_LENGTH, latest_histories
from models.retrieval.export import Retrievers
from models.retrieval.index import EmbeddingIndex
from models.retrieval.new_items import NewItemIndex, NewItemSlots, with_new_items

RETRIEVERS = ("collaborative", "content", "popularity")
SEARCH_BATCH = 256  # users per batched ScaNN call


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


def _complete(items: list[str], fill: Iterable[str], k: int) -> list[str]:
    """``items`` completed to ``k`` from ``fill`` (stops reading ``fill`` once ``k`` are there)."""
    present = set(items)
    out = list(items)
    for candidate in fill:
        if len(out) >= k:
            break
        if candidate not in present:
            present.add(candidate)
            out.append(candidate)
    return out


def batched_search(index: EmbeddingIndex, queries: np.ndarray, wanted: np.ndarray,
                   batch: int = SEARCH_BATCH) -> list[tuple[list[str], np.ndarray]]:
    """Top-``wanted[i]`` of ``index`` for each row ``i`` of ``queries``, in batched ScaNN calls: rows are
    grouped by how many they want, so a user with a long history to skip does not widen everyone's search."""
    out: list[tuple[list[str], np.ndarray]] = [([], np.zeros(0, np.float32))] * len(queries)
    order = np.argsort(wanted, kind="stable")
    for first in range(0, len(order), batch):
        rows = order[first:first + batch]
        k = int(min(wanted[rows].max(), len(index)))
        ids, scores = index.search(queries[rows], k)
        for at, row in enumerate(rows):
            out[row] = (ids[at, : wanted[row]].tolist(), scores[at, : wanted[row]])
    return out


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
    """Top-``k`` of every retriever for every user (see the module docstring): the query vectors user by
    user, then both indexes searched in batches, then each list cut to the user's unseen items."""
    catalog = retrievers.content_index.ids.tolist()
    if k > len(catalog):
        raise ValueError(f"k={k} exceeds the catalog ({len(catalog)} items)")
    users = list(map(str, user_ids))
    ids = {name: np.empty((len(users), k), dtype=object) for name in RETRIEVERS}
    scores = {name: np.full((len(users), k), np.nan, dtype=np.float32) for name in RETRIEVERS}
    found = {name: np.zeros(len(users), dtype=np.int64) for name in RETRIEVERS}
    content_dim = int(retrievers.description["content"]["dim"])
    user_histories = [list(histories.get(user, ()))[: retrievers.history_length] for user in users]
    banned = [seen.get(user, set()) for user in users]
    wide = np.asarray([min(k + len(b), len(catalog)) for b in banned], dtype=np.int64)
    collaborative_queries = np.asarray(
        [retrievers.query_embedding(user, (profiles or {}).get(user), history)
         for user, history in zip(users, user_histories, strict=True)], np.float32).reshape(len(users), -1)
    content = [retrievers.content_embedding(history) for history in user_histories]
    has_content = np.asarray([q is not None for q in content], dtype=bool)
    content_queries = np.zeros((len(users), content_dim), np.float32)
    if has_content.any():
        content_queries[has_content] = np.stack([q for q in content if q is not None])
    collaborative = batched_search(retrievers.collaborative_index, collaborative_queries, wide)
    content_rows = np.flatnonzero(has_content)
    content_found = dict(zip(content_rows.tolist(), batched_search(retrievers.content_index,
                                                                   content_queries[content_rows], wide[content_rows]),
                             strict=True))
    slots = new_items.config.slots(k) if new_items is not None else 0
    for row, user in enumerate(users):
        popular_ids, popular_scores = retrievers.popular((segments or {}).get(user), int(wide[row]))
        results = {
            "collaborative": collaborative[row],
            "content": content_found.get(row, ([], np.zeros(0, np.float32))),
            "popularity": (popular_ids, popular_scores),
        }
        if slots and row in content_found:
            new_ids, new_scores = new_items.index.search(content_queries[row], new_items.since_s, new_items.until_s,
                                                         slots, banned[row])
            results["content"] = with_new_items(*_top_unseen(*results["content"], banned[row], k), new_ids,
                                                new_scores, k, slots)
        # the popularity list, then (rarely needed: read lazily) the rest of the catalog
        fallback = _complete(_top_unseen(popular_ids, popular_scores, banned[row], k)[0],
                             (c for c in catalog if c not in banned[row]), k)
        for name, (found_ids, found_scores) in results.items():
            own, own_scores = _top_unseen(found_ids, found_scores, banned[row], k)
            found[name][row] = len(own)
            completed = _complete(own, fallback, k)
            if len(completed) < k:
                raise ValueError(f"user {user} has seen all but {len(completed)} of the catalog's items")
            ids[name][row] = completed
            scores[name][row, : len(own)] = own_scores
    return CandidateSet(np.asarray(user_ids, dtype=object), ids, scores, found, collaborative_queries, content_queries)
