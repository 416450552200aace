"""ScaNN index: exact search by hand, brute-force vs tree paths, serialize/load parity, relocation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.scann_index import clustered_embeddings
from models.retrieval.index import EmbeddingIndex, IndexConfig, exact_search, recall_vs_exact, widen_budget

TREE = IndexConfig(brute_force_below=1_000)  # the default search settings over a tree (4,000 items)


def _ids(n: int) -> np.ndarray:
    return np.array([f"item{i}" for i in range(n)], dtype=object)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    return clustered_embeddings(4_000, dim=16, sample_seed=0), clustered_embeddings(60, dim=16, spread=0.6, sample_seed=1)


def test_exact_search_by_hand() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype="float32")
    rows, scores = exact_search(items, np.array([[1.0, 0.0], [0.0, 2.0]], dtype="float32"), k=2)
    assert rows.tolist() == [[0, 2], [1, 2]]
    np.testing.assert_allclose(scores, [[1.0, 0.6], [2.0, 1.6]], rtol=1e-6)


def test_small_corpus_is_exact_brute_force() -> None:
    items = np.random.default_rng(0).standard_normal((50, 8)).astype("float32")
    queries = np.random.default_rng(1).standard_normal((5, 8)).astype("float32")
    index = EmbeddingIndex.build(items, _ids(50))
    assert index.kind == "brute_force"
    ids, scores = index.search(queries, 10)
    rows, exact_scores = exact_search(items, queries, 10)
    assert ids.tolist() == _ids(50)[rows].tolist()
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)
    assert recall_vs_exact(index, items, queries, k=10) == 1.0
    assert len(index.search_one(queries[0], 500)[0]) == 50  # k larger than the corpus


def test_tree_index_recall_and_serialize_load_parity(clustered: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    items, queries = clustered
    index = EmbeddingIndex.build(items, _ids(len(items)), TREE)  # the tuned search, over a tree
    assert index.kind == "tree_ah" and index.leaves == round(np.sqrt(len(items)))
    k, reorder, leaves = index.budget(100)
    assert (k, reorder) == (100, 400) and 1 <= leaves < index.leaves  # the tree prunes
    assert recall_vs_exact(index, items, queries, k=100) >= 0.95
    before_ids, before_scores = index.search(queries, 50)
    one_ids, one_scores = index.search_one(queries[0], 50)
    assert one_ids == before_ids[0].tolist()
    np.testing.assert_allclose(one_scores, before_scores[0], rtol=1e-6)

    index.serialize(tmp_path / "staging" / "index")
    moved = tmp_path / "release" / "index"
    shutil.move(str(tmp_path / "staging"), str(tmp_path / "release"))  # a release dir is moved after writing
    loaded = EmbeddingIndex.load(moved)
    assert (loaded.kind, loaded.leaves, len(loaded), loaded.config) == (index.kind, index.leaves, len(index), index.config)
    after_ids, after_scores = loaded.search(queries, 50)
    assert after_ids.tolist() == before_ids.tolist()
    np.testing.assert_array_equal(after_scores, before_scores)


def test_scores_are_dot_products(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = clustered
    index = EmbeddingIndex.build(items, _ids(len(items)), IndexConfig(brute_force_below=1_000, default_k=20))
    ids, scores = index.search_one(queries[3], 20)
    rows = [int(i.removeprefix("item")) for i in ids]
    np.testing.assert_allclose(scores, items[rows] @ queries[3], rtol=1e-5)  # exact rescoring of the winners
    assert list(scores) == sorted(scores, reverse=True)


def test_build_rejects_mismatched_ids() -> None:
    with pytest.raises(ValueError, match="one id per row"):
        EmbeddingIndex.build(np.zeros((3, 4), dtype="float32"), ["a", "b"])


def test_a_tight_budget_is_widened_until_real_queries_reach_the_floor(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((4_000, 16)).astype("float32")  # no clusters: the leaves fit queries badly
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    queries = rng.standard_normal((80, 16)).astype("float32")
    tight = IndexConfig(brute_force_below=1_000, search_fraction=0.01, scan_per_neighbour=2, reorder_factor=1)
    index = EmbeddingIndex.build(items, _ids(len(items)), tight)
    built = recall_vs_exact(index, items, queries, k=100)
    assert built < 0.9  # the case the release check used to refuse

    widened, trail = widen_budget(index, items, queries, 100, target=0.96)
    assert trail[0]["recall"] == pytest.approx(built, abs=1e-4) and trail[-1]["recall"] >= 0.96
    assert recall_vs_exact(widened, items, queries, k=100) >= 0.96
    assert [step["leaves_searched"] for step in trail] == sorted(step["leaves_searched"] for step in trail)
    assert widened.budget(100) != index.budget(100) and widened.searcher is index.searcher  # not rebuilt

    index.serialize(tmp_path / "index")
    widened.write_config(tmp_path / "index")
    loaded = EmbeddingIndex.load(tmp_path / "index")
    assert loaded.config == widened.config and loaded.budget(100) == widened.budget(100)


def test_widening_stops_at_the_widest_budget_and_leaves_brute_force_alone() -> None:
    rng = np.random.default_rng(4)
    items = rng.standard_normal((300, 8)).astype("float32")
    queries = rng.standard_normal((10, 8)).astype("float32")
    exact = EmbeddingIndex.build(items, _ids(300))
    same, trail = widen_budget(exact, items, queries, 10, target=1.01)  # unreachable target
    assert same is exact and len(trail) == 1 and trail[0]["recall"] == 1.0
    tree = EmbeddingIndex.build(items, _ids(300), IndexConfig(brute_force_below=100, search_fraction=0.05,
                                                              scan_per_neighbour=1, reorder_factor=1))
    widest, trail = widen_budget(tree, items, queries, 10, target=1.01)
    _, reorder, leaves = widest.budget(10)
    assert leaves == widest.leaves and (widest.config.reorder_factor == 64 or reorder == len(widest))
    assert len(trail) > 1
