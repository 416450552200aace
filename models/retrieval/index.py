"""ScaNN maximum-inner-product indexes over item embeddings, with string ids.

Layout: a k-means tree (about ``sqrt(n)`` leaves) whose searched leaves are scored with anisotropic
asymmetric hashing (4-bit codes per 2 dimensions), then the best ``reorder_factor * k`` are rescored
exactly. A top-``k`` query searches ``search_fraction`` of the leaves, or more leaves if that would
scan fewer than ``scan_per_neighbour * k`` items (small corpora need a larger share for high recall).
Defaults were tuned for recall@100 >= 0.95 against exact search: measured 0.99 on trained MovieLens
two-tower and content embeddings (9k items, 95 leaves, 21 searched) and 0.976 on 1M clustered
vectors (1,000 leaves, 50 searched; ``benchmarks/scann_index.py``).

The defaults are a starting point, not a promise: how well a tree's leaves fit real queries depends on
the embeddings (measured: the s100k world's retail two-tower, 11,540 items, 107 leaves, 19 searched,
recall@100 0.876). A release therefore widens its indexes' search budget until a sample of its users'
real queries reaches the recall floor (:func:`widen_budget`, run by the release's index check): more
leaves first, then more exactly rescored candidates. The budget lives in ``index.json`` and applies
at query time, so the ScaNN assets are not rebuilt.

Brute-force fallback: below ``brute_force_below`` items (10,000 by default) the index is a ScaNN exact
brute-force scan. There the scan budget of a top-100 query (20 x 100 = 2,000 items) is a large share
of the corpus, so a tree prunes little and quantisation loses recall -- measured on the demo world's
retail two-tower (5,790 items, 76 leaves, 27 searched): recall@100 0.920, which the release check
refused -- while an exact scan of 10,000 x 64 floats takes well under a millisecond. Both kinds
serialise and load the same way.

On disk (``serialize(dir)``): ScaNN's assets with paths relative to ``dir`` (a release dir can be
moved after it is written), ``ids.npy`` and ``index.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scann.scann_ops.py import scann_ops_pybind


@dataclass(frozen=True)
class IndexConfig:
    brute_force_below: int = 10_000
    num_leaves: int | None = None  # None: round(sqrt(n))
    search_fraction: float = 0.05  # share of leaves searched per query ...
    scan_per_neighbour: int = 20  # ... but at least enough leaves to scan this many items per neighbour asked
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    reorder_factor: int = 4
    default_k: int = 100
    training_sample: int = 250_000
    training_threads: int = 0  # 0: all cores


def _leaves_to_search(config: IndexConfig, leaves: int, size: int, k: int) -> int:
    """``search_fraction`` of the leaves, or more when that would scan < ``scan_per_neighbour * k`` items."""
    by_fraction = math.ceil(config.search_fraction * leaves)
    by_scan = math.ceil(config.scan_per_neighbour * k * leaves / size)
    return min(leaves, max(1, by_fraction, by_scan))


class EmbeddingIndex:
    """A ScaNN searcher over unit (or any) vectors, scoring by dot product; ids are strings."""

    def __init__(
        self, searcher: scann_ops_pybind.ScannSearcher, ids: np.ndarray, kind: str, leaves: int, config: IndexConfig
    ) -> None:
        self.searcher = searcher
        self.ids = np.asarray(ids, dtype=object)
        self.kind = kind  # "tree_ah" or "brute_force"
        self.leaves = leaves  # partitions of a tree_ah index (0 for brute force)
        self.config = config

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: Sequence[str], config: IndexConfig | None = None) -> EmbeddingIndex:
        config = config or IndexConfig()
        data = np.ascontiguousarray(embeddings, dtype="float32")
        if data.ndim != 2 or len(data) != len(ids) or len(data) == 0:
            raise ValueError(f"need a non-empty [n, d] matrix with one id per row, got {data.shape} and {len(ids)} ids")
        n = len(data)
        builder = scann_ops_pybind.builder(data, min(config.default_k, n), "dot_product")
        builder.set_n_training_threads(config.training_threads)
        if n < config.brute_force_below:
            return cls(builder.score_brute_force().build(), np.asarray(ids, dtype=object), "brute_force", 0, config)
        leaves = config.num_leaves or max(2, round(math.sqrt(n)))
        searcher = (
            builder.tree(
                num_leaves=leaves,
                num_leaves_to_search=_leaves_to_search(config, leaves, n, config.default_k),
                training_sample_size=min(n, config.training_sample),
            )
            .score_ah(config.dims_per_block, anisotropic_quantization_threshold=config.anisotropic_threshold)
            .reorder(config.reorder_factor * config.default_k)
            .build()
        )
        return cls(searcher, np.asarray(ids, dtype=object), "tree_ah", leaves, config)

    def budget(self, k: int) -> tuple[int, int, int]:
        """``(k, items rescored exactly, leaves searched)`` for a top-``k`` query (-1: ScaNN default)."""
        k = max(1, min(k, len(self)))
        if self.kind != "tree_ah":
            return k, -1, -1
        leaves = _leaves_to_search(self.config, self.leaves, len(self), k)
        return k, min(len(self), self.config.reorder_factor * k), leaves

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for a batch: ``(ids [q, k] object, scores [q, k] float32)``, best first."""
        k, reorder, leaves = self.budget(k)
        rows, scores = self.searcher.search_batched(
            np.ascontiguousarray(queries, dtype="float32"), k, reorder, leaves
        )
        return self.ids[np.asarray(rows, dtype="int64")], np.asarray(scores, dtype="float32")

    def search_one(self, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """Top-``k`` for one query vector (the request path): ``(ids, scores)``."""
        k, reorder, leaves = self.budget(k)
        rows, scores = self.searcher.search(np.asarray(query, dtype="float32").ravel(), k, reorder, leaves)
        return self.ids[np.asarray(rows, dtype="int64")].tolist(), np.asarray(scores, dtype="float32")

    def with_config(self, config: IndexConfig) -> EmbeddingIndex:
        """The same searcher with another query budget (``scan_per_neighbour``, ``search_fraction``,
        ``reorder_factor`` apply at query time)."""
        return EmbeddingIndex(self.searcher, self.ids, self.kind, self.leaves, config)

    def write_config(self, directory: Path) -> None:
        """Rewrite ``index.json`` of an index serialized in ``directory`` with this index's budget."""
        meta_file = Path(directory) / "index.json"
        meta = json.loads(meta_file.read_text())
        meta["config"] = asdict(self.config)
        meta_file.write_text(json.dumps(meta, indent=2))

    def serialize(self, directory: Path) -> None:
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)  # ScaNN needs the directory to exist
        self.searcher.serialize(str(directory), relative_path=True)
        np.save(directory / "ids.npy", self.ids.astype(str))
        meta = {"kind": self.kind, "size": len(self), "leaves": self.leaves, "config": asdict(self.config)}
        (directory / "index.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> EmbeddingIndex:
        directory = Path(directory).resolve()  # load_searcher needs an absolute path
        meta = json.loads((directory / "index.json").read_text())
        searcher = scann_ops_pybind.load_searcher(str(directory))
        ids = np.load(directory / "ids.npy").astype(object)
        return cls(searcher, ids, meta["kind"], meta["leaves"], IndexConfig(**meta["config"]))


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Exact dot-product top-``k`` with numpy: ``(rows [q, k], scores [q, k])``, best first."""
    data = np.asarray(embeddings, dtype="float32")
    k = min(k, len(data))
    rows_out, scores_out = [], []
    for start in range(0, len(queries), chunk):
        scores = np.asarray(queries[start : start + chunk], dtype="float32") @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        rows_out.append(np.take_along_axis(top, order, axis=1))
        scores_out.append(np.take_along_axis(top_scores, order, axis=1))
    return np.concatenate(rows_out), np.concatenate(scores_out)


def recall_vs_exact(index: EmbeddingIndex, embeddings: np.ndarray, queries: np.ndarray, k: int = 100) -> float:
    """Mean share of the exact top-``k`` (numpy over ``embeddings``, rows aligned with the index ids)
    that the index returns in its own top-``k``."""
    exact_rows, _ = exact_search(embeddings, queries, k)
    return _recall(index, index.ids[exact_rows], queries, k)


def _recall(index: EmbeddingIndex, exact_ids: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of ``exact_ids`` (the exact top-``k`` per query) found in the index's top-``k``."""
    found, _ = index.search(queries, k)
    hits = [len(set(a) & set(b)) / len(a) for a, b in zip(exact_ids.tolist(), found.tolist(), strict=True)]
    return float(np.mean(hits))


MAX_REORDER_FACTOR = 64


def widen_budget(index: EmbeddingIndex, embeddings: np.ndarray, queries: np.ndarray, k: int,
                 target: float) -> tuple[EmbeddingIndex, list[dict[str, float]]]:
    """The index with the smallest query budget on this ladder whose recall@``k`` on ``queries`` reaches
    ``target``: twice the scanned items per step until every leaf is searched, then twice the items
    rescored exactly, up to :data:`MAX_REORDER_FACTOR` x ``k``. Returns the widest one tried when none
    reaches it, and the trail of (budget, recall) steps. A brute-force index is returned as it is."""
    current, trail = index, []
    exact_ids = index.ids[exact_search(embeddings, queries, k)[0]]  # the same truth for every step
    while True:
        recall = _recall(current, exact_ids, queries, k)
        _, reorder, leaves = current.budget(k)
        trail.append({"leaves_searched": leaves, "leaves": current.leaves, "rescored": reorder,
                      "recall": round(recall, 4)})
        config = current.config
        if recall >= target or current.kind != "tree_ah":
            return current, trail
        if leaves < current.leaves:
            config = replace(config, scan_per_neighbour=config.scan_per_neighbour * 2,
                             search_fraction=min(1.0, config.search_fraction * 2))
        elif config.reorder_factor < MAX_REORDER_FACTOR and reorder < len(current):
            config = replace(config, reorder_factor=config.reorder_factor * 2)
        else:
            return current, trail
        current = current.with_config(config)
