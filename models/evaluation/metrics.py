"""Full-ranking recommendation metrics, vectorised with numpy/scipy over all evaluated users at once.

Conventions shared by every function:

- ``recs``: ``(n_users, K)`` int array of item column indices, best first, ranked over the WHOLE
  catalog (no sampled negatives); only the first ``k <= K`` columns are read.
- ``relevance``: ``(n_users, n_items)`` CSR matrix, row ``u`` = the held-out items of user ``u``; an
  entry > 0 marks a relevant item and its value is the graded relevance.
- ``hits``: ``(n_users, K)`` bool array, ``hits[u, j]`` = the item at rank ``j + 1`` is relevant to ``u``
  (:func:`gather` gives it); ``gains``: the same with grades instead of booleans.
- Accuracy metrics are averaged over users (every evaluated user must have >= 1 relevant item).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _row_keys(matrix: sp.csr_matrix) -> np.ndarray:
    """Sorted linear keys ``row * n_cols + col`` of the stored entries of a CSR matrix."""
    matrix.sort_indices()
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices


def gather(recs: np.ndarray, relevance: sp.csr_matrix) -> np.ndarray:
    """``out[u, j] = relevance[u, recs[u, j]]`` (0 where the entry is absent), as float."""
    keys = _row_keys(relevance)
    if len(keys) == 0:
        return np.zeros(recs.shape, dtype=np.float64)
    wanted = np.arange(recs.shape[0], dtype=np.int64)[:, None] * relevance.shape[1] + recs
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found = keys[pos] == wanted
    return np.where(found, relevance.data[pos], 0.0).astype(np.float64)


def row_isin(recs: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``out[u, j]`` = item ``recs[u, j]`` also appears in row ``u`` of ``others`` (both index arrays)."""
    width = int(max(recs.max(initial=0), others.max(initial=0))) + 1
    base = np.arange(recs.shape[0], dtype=np.int64)[:, None] * width
    return np.isin(base + recs, base + others)


def ideal_gains(relevance: sp.csr_matrix, k: int) -> np.ndarray:
    """``(n_users, k)``: each user's relevance grades sorted descending, zero-padded (the ideal ranking)."""
    n = relevance.shape[0]
    rows = np.repeat(np.arange(n), np.diff(relevance.indptr))
    order = np.lexsort((-relevance.data, rows))  # rows ascending already, grades descending within a row
    rank = np.arange(len(order)) - relevance.indptr[rows]
    keep = rank < k
    out = np.zeros((n, k), dtype=np.float64)
    out[rows[keep], rank[keep]] = relevance.data[order][keep]
    return out


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Recall@K = mean_u |top-K(u) ∩ R(u)| / |R(u)|  (R(u): the relevant held-out items of u)."""
    return float(np.mean(hits[:, :k].sum(axis=1) / n_relevant))


def hit_rate_at_k(hits: np.ndarray, k: int) -> float:
    """HitRate@K = mean_u 1[|top-K(u) ∩ R(u)| > 0]."""
    return float(np.mean(hits[:, :k].any(axis=1)))


def _dcg(gains: np.ndarray, k: int) -> np.ndarray:
    top = gains[:, :k]
    return top @ (1.0 / np.log2(np.arange(2, top.shape[1] + 2)))


def ndcg_at_k(gains: np.ndarray, ideal: np.ndarray, k: int) -> float:
    """NDCG@K = mean_u DCG_u / IDCG_u with DCG = sum_{j=1..K} g_j / log2(j + 1) (linear gain).

    ``gains`` are the grades of the recommended items (binary relevance: 1/0), ``ideal`` the grades of
    the user's relevant items sorted descending (:func:`ideal_gains`), so IDCG is the best DCG possible.
    """
    return float(np.mean(_dcg(gains, k) / _dcg(ideal, k)))


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """MAP@K = mean_u AP@K(u),  AP@K = sum_{j=1..K} P@j * rel_j / min(|R(u)|, K)  (P@j: precision at j)."""
    top = hits[:, :k].astype(np.float64)
    precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    return float(np.mean((precision * top).sum(axis=1) / np.minimum(n_relevant, k)))


def catalog_coverage(recs: np.ndarray, n_items: int, k: int) -> float:
    """Coverage@K = |union_u top-K(u)| / |catalog|."""
    return float(len(np.unique(recs[:, :k])) / n_items)


def self_information(user_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Per item ``-log2 p(i)`` with ``p(i) = (n_i + 1) / (n_users + 1)``.

    ``n_i`` = training users who interacted with item i; the +1 smoothing keeps never-seen items
    finite (they get the maximum, ``log2(n_users + 1)``).
    """
    return -np.log2((np.asarray(user_counts, dtype=np.float64) + 1.0) / (n_users + 1.0))


def novelty(recs: np.ndarray, information: np.ndarray, k: int) -> float:
    """Novelty@K = mean over users and ranks of ``-log2 p(i)`` (:func:`self_information`), in bits."""
    return float(np.mean(information[recs[:, :k]]))


def serendipity(recs: np.ndarray, hits: np.ndarray, expected: np.ndarray, k: int) -> float:
    """Serendipity@K = mean_u |{i in top-K(u) : i in R(u) and i not in E_K(u)}| / K.

    ``expected`` is a primitive recommender's lists (here: the popularity top-K for the same user):
    an item is serendipitous if it is relevant AND a primitive recommender would not have shown it.
    """
    unexpected = ~row_isin(recs[:, :k], expected[:, :k])
    return float(np.mean((hits[:, :k] & unexpected).sum(axis=1) / k))


def intra_list_diversity(recs: np.ndarray, features: sp.csr_matrix, k: int) -> float:
    """ILD@K = mean_u 2 / (K (K-1)) * sum_{a<b} (1 - cos(f_a, f_b)) over the pairs of u's top-K list.

    ``features`` holds one row per item (e.g. multi-hot categories). Computed without materialising
    pairs: for unit rows, sum_{a != b} f_a . f_b = ||sum_a f_a||^2 - sum_a ||f_a||^2. An item without
    features has similarity 0 to every other item.
    """
    if k < 2:
        raise ValueError("intra-list diversity needs k >= 2")
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ features
    top = recs[:, :k]
    n = top.shape[0]
    picked = unit[top.ravel()]
    owner = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), np.arange(n * k))), shape=(n, n * k))
    sums = owner @ picked
    squared_sum = np.asarray(sums.multiply(sums).sum(axis=1)).ravel()
    self_terms = (norms[top] > 0).sum(axis=1)
    mean_similarity = (squared_sum - self_terms) / (k * (k - 1))
    return float(np.mean(1.0 - mean_similarity))


def average_recommendation_popularity(recs: np.ndarray, popularity: np.ndarray, k: int) -> float:
    """ARP@K = mean_u (1/K) sum_{i in top-K(u)} phi(i), phi(i) = share of training users who interacted with i."""
    return float(np.mean(popularity[recs[:, :k]]))


def gini_exposure(recs: np.ndarray, n_items: int, k: int) -> float:
    """Gini of item exposure: e_i = number of top-K lists containing item i (all catalog items).

    With e sorted ascending (i = 1..n): G = sum_i (2i - n - 1) e_i / (n sum_i e_i);
    0 = every item shown equally often, -> 1 = all exposure on one item.
    """
    exposure = np.sort(np.bincount(recs[:, :k].ravel(), minlength=n_items)).astype(np.float64)
    i = np.arange(1, n_items + 1)
    return float(((2 * i - n_items - 1) * exposure).sum() / (n_items * exposure.sum()))
