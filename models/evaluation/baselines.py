"""Baseline recommenders, all with one interface:

``fit(train, catalog, users) -> self`` and ``recommend(user_ids, k, exclude_seen=True) -> (len(user_ids), k)``
array of item ids, best first, ranked over the whole catalog.

``train`` is an interactions frame (``user_id, item_id, timestamp, event_type, weight``); the models see
it as a user x item matrix of summed weights. A user without training history gets the global
popularity list from every model except ``random`` and ``segment_popularity`` (which serves the
user's profile segment when the users table places it). ``search_space`` is the validation grid that
``models.evaluation.tuning`` searches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from models.evaluation.data import ItemVocabulary, user_item_matrix
from models.evaluation.segments import assign_segments

SCORE_BATCH = 1024  # users scored at once (bounds the dense batch x items score matrix)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Recommender(ABC):
    name: ClassVar[str]
    search_space: ClassVar[dict[str, Sequence[Any]]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> Self:
        self.items = ItemVocabulary.from_catalog(catalog)
        self.user_ids = np.asarray(sorted(set(train["user_id"].astype(str))), dtype=object)
        self.matrix = user_item_matrix(train, self.user_ids, self.items)
        self.popularity = np.asarray(self.matrix.sum(axis=0), dtype=np.float64).ravel()
        self._fit(train, catalog, users)
        return self

    def recommend(self, user_ids: Sequence[str] | np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        if not 0 < k <= len(self.items):
            raise ValueError(f"k must be in 1..{len(self.items)} (catalog size), got {k}")
        ids = np.asarray(user_ids, dtype=object)
        rows = pd.Index(self.user_ids).get_indexer(ids)
        out = np.empty((len(ids), k), dtype=object)
        for start in range(0, len(ids), SCORE_BATCH):
            batch = slice(start, start + SCORE_BATCH)
            scores = self._scores(rows[batch], ids[batch])
            if exclude_seen:
                self._mask_seen(scores, rows[batch])
            out[batch] = self.items.decode(top_k(scores, k))
        return out

    def _mask_seen(self, scores: np.ndarray, rows: np.ndarray) -> None:
        known = np.flatnonzero(rows >= 0)
        seen = self.matrix[rows[known]]
        scores[np.repeat(known, np.diff(seen.indptr)), seen.indices] = -np.inf

    @abstractmethod
    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        """Model-specific training on ``self.matrix`` (the base class already built it)."""

    @abstractmethod
    def _scores(self, rows: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        """``(len(rows), n_items)`` float scores; ``rows`` = matrix rows, -1 for users without history."""


class CollaborativeRecommender(Recommender):
    """A model that scores from the user's history; users without history get global popularity."""

    def _scores(self, rows: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        scores = np.tile(self.popularity, (len(rows), 1))
        known = rows >= 0
        if known.any():
            scores[known] = self._history_scores(rows[known])
        return scores

    @abstractmethod
    def _history_scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of users with training history (their matrix rows)."""


class RandomRecommender(Recommender):
    """Uniformly random ranking (the floor every model must beat)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        self._rng = np.random.default_rng(self.params["seed"])

    def _scores(self, rows: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        return self._rng.random((len(rows), len(self.items)))


class PopularityRecommender(Recommender):
    """Global top-K by summed training interaction weight (a purchase outweighs a view)."""

    name = "popularity"

    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        """Nothing to learn: ``self.popularity`` (the matrix's column sums) is the model."""

    def _scores(self, rows: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity, (len(rows), 1))


class SegmentPopularityRecommender(Recommender):
    """The legacy system: each user segment (``models.evaluation.segments``) sees its own most popular
    items; ties (items the segment never touched) are broken by global popularity. Users outside every
    segment get the global list."""

    name = "segment_popularity"

    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        segments = assign_segments(users, train, catalog)
        self.segment_labels = np.asarray(sorted(set(segments)), dtype=object)
        self._segment_of = pd.Series(pd.Index(self.segment_labels).get_indexer(segments.to_numpy()), index=segments.index)
        member = self._segment_of.reindex(self.user_ids).fillna(-1).astype(int).to_numpy()
        placed = np.flatnonzero(member >= 0)
        membership = sp.csr_matrix(
            (np.ones(len(placed)), (member[placed], placed)), shape=(len(self.segment_labels), len(self.user_ids))
        )
        tie_break = self.popularity / (self.popularity.sum() + 1.0)  # < 1: only orders equal segment counts
        global_row = self.popularity + tie_break
        self._table = np.vstack([np.asarray((membership @ self.matrix).todense()) + tie_break, global_row])

    def _scores(self, rows: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        segment = self._segment_of.reindex(user_ids).fillna(-1).astype(int).to_numpy()
        return self._table[segment]  # fancy indexing copies; -1 selects the last row: global popularity


class EASERecommender(CollaborativeRecommender):
    """EASE (Steck 2019): B = argmin ||X - XB||^2 + l2 ||B||^2 s.t. diag(B) = 0, closed form
    P = (X^T X + l2 I)^-1, B = I - P diag(1/diag(P)); scores = x_u B.

    Fitted on the items with training interactions (the others have zero rows/columns in B, score 0).
    When users are fewer than items, P comes from the Woodbury identity
    P = (I - X^T (l2 I + X X^T)^-1 X) / l2, which costs users x items^2 instead of items^3.
    """

    name = "ease"
    search_space = {"l2": (300.0, 1000.0, 3000.0, 10000.0)}

    def __init__(self, l2: float = 200.0) -> None:
        super().__init__(l2=l2)

    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        l2 = float(self.params["l2"])
        self._active = np.flatnonzero(self.matrix.getnnz(axis=0) > 0)
        x = self.matrix[:, self._active].astype(np.float64)
        n_users, n_items = x.shape
        if n_users < n_items:
            dense = x.toarray()
            inner = sla.solve(dense @ dense.T + l2 * np.eye(n_users), dense, assume_a="pos")
            precision = dense.T @ inner
            precision *= -1.0 / l2
            precision.flat[:: n_items + 1] += 1.0 / l2
        else:
            precision = (x.T @ x).toarray()
            precision.flat[:: n_items + 1] += l2
            precision = sla.inv(precision, overwrite_a=True, assume_a="pos")
        precision /= -np.diag(precision).copy()  # column j divided by -P_jj: B = I - P diag(1/diag(P))
        np.fill_diagonal(precision, 0.0)
        self._weights = precision.astype(np.float32)

    def _history_scores(self, rows: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(rows), len(self.items)), dtype=np.float64)
        scores[:, self._active] = self.matrix[rows][:, self._active] @ self._weights
        return scores


class ALSRecommender(CollaborativeRecommender):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) from the ``implicit`` package,
    CPU solver; confidence = ``alpha`` x summed interaction weight. Scores = user factors . item factors."""

    name = "als"
    search_space = {"factors": (16, 32, 64), "regularization": (0.1, 1.0), "iterations": (10, 20)}

    def __init__(
        self, factors: int = 64, regularization: float = 0.1, iterations: int = 15, alpha: float = 1.0, seed: int = 0
    ) -> None:
        super().__init__(factors=factors, regularization=regularization, iterations=iterations, alpha=alpha, seed=seed)

    def _fit(self, train: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads slow it down
            model = AlternatingLeastSquares(
                factors=int(self.params["factors"]),
                regularization=float(self.params["regularization"]),
                iterations=int(self.params["iterations"]),
                alpha=float(self.params["alpha"]),
                random_state=int(self.params["seed"]),
            )
            model.fit(self.matrix, show_progress=False)
        self._user_factors = np.asarray(model.user_factors)
        self._item_factors = np.asarray(model.item_factors)

    def _history_scores(self, rows: np.ndarray) -> np.ndarray:
        return self._user_factors[rows] @ self._item_factors.T


BASELINES: tuple[type[Recommender], ...] = (
    RandomRecommender, PopularityRecommender, SegmentPopularityRecommender, EASERecommender, ALSRecommender,
)
