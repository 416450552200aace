"""Every metric on a hand-computed case (the arithmetic is in the comments).

Two users, six items (0..5):
  recs   u0 = [0, 1, 2, 3]          u1 = [4, 5, 0, 1]
  R(u0) = {1, 3, 5} (grades 1:3, 3:1, 5:2)   R(u1) = {0} (grade 1)
  hits   u0 = [F, T, F, T]          u1 = [F, F, T, F]
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.evaluation import metrics as m

RECS = np.array([[0, 1, 2, 3], [4, 5, 0, 1]])
GRADES = sp.csr_matrix(np.array([[0, 3, 0, 1, 0, 2], [1, 0, 0, 0, 0, 0]], dtype=float))
RELEVANCE = (GRADES > 0).astype(float).tocsr()
N_RELEVANT = np.array([3, 1])
HITS = m.gather(RECS, RELEVANCE) > 0


def test_gather_and_ideal_gains() -> None:
    assert HITS.tolist() == [[False, True, False, True], [False, False, True, False]]
    assert m.gather(RECS, GRADES).tolist() == [[0, 3, 0, 1], [0, 0, 1, 0]]
    assert m.ideal_gains(GRADES, 4).tolist() == [[3, 2, 1, 0], [1, 0, 0, 0]]
    assert m.gather(RECS, sp.csr_matrix((2, 6))).sum() == 0  # no relevant entry at all


def test_recall() -> None:
    # @2: u0 1/3, u1 0/1 -> 1/6 ; @4: u0 2/3, u1 1/1 -> 5/6
    assert m.recall_at_k(HITS, N_RELEVANT, 2) == pytest.approx(1 / 6)
    assert m.recall_at_k(HITS, N_RELEVANT, 4) == pytest.approx(5 / 6)


def test_hit_rate() -> None:
    # @1: nobody hits at rank 1 -> 0 ; @2: u0 hits at rank 2 -> 1/2 ; @3: both -> 1
    assert m.hit_rate_at_k(HITS, 1) == 0.0
    assert m.hit_rate_at_k(HITS, 2) == 0.5
    assert m.hit_rate_at_k(HITS, 3) == 1.0


def test_ndcg_binary() -> None:
    # u0: DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    #     IDCG (3 relevant) = 1 + 1/log2(3) + 1/log2(4) = 2.130930 -> 0.498189
    # u1: DCG = 1/log2(4) = 0.5, IDCG = 1 -> 0.5 ; mean = 0.499095
    ideal = m.ideal_gains(RELEVANCE, 4)
    assert m.ndcg_at_k(HITS.astype(float), ideal, 4) == pytest.approx(0.499095, abs=1e-6)
    # @1: no hit at rank 1 for anyone -> 0
    assert m.ndcg_at_k(HITS.astype(float), m.ideal_gains(RELEVANCE, 1), 1) == 0.0


def test_ndcg_graded() -> None:
    # u0: DCG = 3/log2(3) + 1/log2(5) = 1.892789 + 0.430677 = 2.323466
    #     IDCG = 3/1 + 2/log2(3) + 1/log2(4) = 3 + 1.261860 + 0.5 = 4.761860 -> 0.487932
    # u1: grade 1 at rank 3: 0.5 / 1 = 0.5 ; mean = 0.493966
    gains = m.gather(RECS, GRADES)
    assert m.ndcg_at_k(gains, m.ideal_gains(GRADES, 4), 4) == pytest.approx(0.493966, abs=1e-6)


def test_map() -> None:
    # u0: hits at ranks 2 and 4: (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3 = 1/3
    # u1: hit at rank 3: P@3 / min(1, 4) = 1/3 ; MAP@4 = 1/3
    assert m.map_at_k(HITS, N_RELEVANT, 4) == pytest.approx(1 / 3)
    # @2: u0 (1/2) / min(3, 2) = 1/4 ; u1 0 -> 1/8
    assert m.map_at_k(HITS, N_RELEVANT, 2) == pytest.approx(1 / 8)


def test_coverage() -> None:
    # @2: {0, 1, 4, 5} of 6 items ; @4: all six
    assert m.catalog_coverage(RECS, 6, 2) == pytest.approx(4 / 6)
    assert m.catalog_coverage(RECS, 6, 4) == 1.0


def test_novelty() -> None:
    # 3 training users; users per item: item0 3, item1 1, others 0
    # -log2((n_i + 1) / 4): item0 -> 0 bits, item1 -> 1 bit, unseen -> 2 bits
    info = m.self_information(np.array([3, 1, 0, 0, 0, 0]), n_users=3)
    assert info.tolist() == [0.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    # top-2: u0 [0, 1] -> 0, 1 ; u1 [4, 5] -> 2, 2 ; mean = 5/4
    assert m.novelty(RECS, info, 2) == pytest.approx(1.25)


def test_serendipity() -> None:
    # popularity lists: u0 [1, 0, 2, 4] , u1 [0, 2, 3, 4]
    # u0's relevant recs: item1 (expected -> not serendipitous), item3 (unexpected) -> 1/4
    # u1's relevant rec: item0 (expected) -> 0 ; mean = 1/8
    expected = np.array([[1, 0, 2, 4], [0, 2, 3, 4]])
    assert m.serendipity(RECS, HITS, expected, 4) == pytest.approx(1 / 8)
    assert m.serendipity(RECS, HITS, RECS, 4) == 0.0  # a list identical to the primitive one


def test_intra_list_diversity() -> None:
    # features: 0 [1,0], 1 [1,0], 2 [0,1], 3 [1,1], 4 [0,0] (none), 5 [0,1]
    features = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0], [0, 1]], dtype=float))
    # @3: u0 [0,1,2]: distances (0,1)=0, (0,2)=1, (1,2)=1 -> 2/3
    #     u1 [4,5,0]: item 4 has no features -> 1, 1 ; (5,0)=1 -> 1 ; mean = (2/3 + 1)/2 = 5/6
    assert m.intra_list_diversity(RECS, features, 3) == pytest.approx(5 / 6)
    # @4, u0 only [0,1,2,3]: 0 + 1 + (1 - 1/sqrt2) + 1 + (1 - 1/sqrt2) + (1 - 1/sqrt2)
    #     = 2 + 3 * 0.292893 = 2.878680 over 6 pairs = 0.479780
    assert m.intra_list_diversity(RECS[:1], features, 4) == pytest.approx(0.479780, abs=1e-6)
    with pytest.raises(ValueError):
        m.intra_list_diversity(RECS, features, 1)


def test_average_recommendation_popularity() -> None:
    # share of 3 training users: item0 3/3, item1 1/3, others 0
    # @2: u0 (1 + 1/3)/2 = 2/3 ; u1 0 -> 1/3
    share = np.array([3, 1, 0, 0, 0, 0]) / 3
    assert m.average_recommendation_popularity(RECS, share, 2) == pytest.approx(1 / 3)


def test_gini_exposure() -> None:
    # @2: exposure of the six items sorted [0,0,1,1,1,1], weights 2i-7 = -5,-3,-1,1,3,5
    #     sum w*e = -1+1+3+5 = 8 ; n * sum e = 6 * 4 = 24 -> 1/3
    assert m.gini_exposure(RECS, 6, 2) == pytest.approx(1 / 3)
    # @4: exposure sorted [1,1,1,1,2,2]: -5-3-1+1+6+10 = 8 ; 6 * 8 = 48 -> 1/6
    assert m.gini_exposure(RECS, 6, 4) == pytest.approx(1 / 6)
    # equal exposure -> 0
    assert m.gini_exposure(np.array([[0, 1], [2, 3]]), 4, 2) == 0.0


def test_row_isin() -> None:
    assert m.row_isin(np.array([[0, 1], [0, 1]]), np.array([[1, 2], [2, 3]])).tolist() == [[False, True], [False, False]]
