"""ScaNN vs exact numpy search on a 1M-item, 64-dim index of clustered unit embeddings.

Embeddings mimic trained item vectors rather than uniform noise: 200 topics x 10 sub-topics with
Zipf-sized clusters (a few huge genres, a long tail), items scattered around their sub-topic centre.
Queries are drawn the same way (a user sits near the items they like). One run measures: build time,
single-query latency p50/p99 for ScaNN (the default ``IndexConfig``) and for exact numpy search,
recall@100 of ScaNN against exact search (a ratio over all queries of the run), index size on disk
and the process memory the index added.

Run: ``.venv/bin/python -m benchmarks.scann_index`` (writes ``reports/bench/scann_index.json``).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import report
from common.paths import REPO_ROOT

REPORT = REPO_ROOT / "reports" / "bench" / "scann_index.json"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_embeddings(
    n: int, dim: int = 64, topics: int = 200, subtopics: int = 10, spread: float = 0.35, sample_seed: int = 0
) -> np.ndarray:
    """``n`` unit vectors in Zipf-sized clusters of a two-level topic hierarchy (float32).

    The hierarchy is the same for every call (fixed seed); ``sample_seed`` draws the points, so items
    and queries come from one space without being copies of each other.
    """
    centre_rng, rng = np.random.default_rng(12345), np.random.default_rng(sample_seed)
    topic_centres = _unit(centre_rng.standard_normal((topics, dim)))
    parents = np.repeat(np.arange(topics), subtopics)
    centres = _unit(topic_centres[parents] + 0.5 * _unit(centre_rng.standard_normal((topics * subtopics, dim))))
    sizes = 1.0 / np.arange(1, len(centres) + 1) ** 0.7
    cluster = rng.choice(len(centres), size=n, p=sizes / sizes.sum())
    noise = rng.standard_normal((n, dim)).astype("float32") * (spread / np.sqrt(dim))
    return _unit(centres[cluster].astype("float32") + noise).astype("float32")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _latencies_ms(search, queries: np.ndarray) -> dict[str, float]:
    times = []
    for query in queries:
        start = time.perf_counter_ns()
        search(query)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return report.latency_ms(times, digits=4)


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run(n: int = 1_000_000, dim: int = 64, num_queries: int = 1_000, exact_latency_queries: int = 200, k: int = 100) -> dict:
    """One benchmark run; returns the figures (also printed as they come)."""
    # ScaNN (and TensorFlow) load here, not at import, so that ``--help`` answers at once.
    from models.retrieval.index import EmbeddingIndex, IndexConfig, exact_search, recall_vs_exact

    print(f"generating {n:,} x {dim} clustered embeddings and {num_queries} queries ...", flush=True)
    embeddings = clustered_embeddings(n, dim, sample_seed=0)
    queries = clustered_embeddings(num_queries, dim, spread=0.6, sample_seed=1)
    ids = np.char.add("item_", np.arange(n).astype(str)).astype(object)
    config = IndexConfig()
    rss_before = _rss_mb()
    print("building the ScaNN index ...", flush=True)
    start = time.perf_counter()
    index = EmbeddingIndex.build(embeddings, ids, config)
    build_s = time.perf_counter() - start
    memory_mb = _rss_mb() - rss_before
    print(f"  built {index.kind} with {index.leaves} leaves in {build_s:.1f} s (+{memory_mb:.0f} MB RSS)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "index"
        index.serialize(target)
        disk_mb = _dir_mb(target)
        shutil.rmtree(target)
    print("timing single queries ...", flush=True)
    scann_latency = _latencies_ms(lambda q: index.search_one(q, k), queries)
    exact_latency = _latencies_ms(lambda q: exact_search(embeddings, q[None, :], k), queries[:exact_latency_queries])
    print(f"  scann {scann_latency}  exact numpy {exact_latency}", flush=True)
    print(f"recall@{k} against exact search over {num_queries} queries ...", flush=True)
    recall = recall_vs_exact(index, embeddings, queries, k)
    _, reorder, leaves_searched = index.budget(k)
    result = {
        "items": n,
        "dim": dim,
        "k": k,
        "queries": num_queries,
        "index": {"kind": index.kind, "leaves": index.leaves, "leaves_searched": leaves_searched, "reordered": reorder},
        "build_seconds": round(build_s, 2),
        "scann": scann_latency,
        "exact_numpy": {**exact_latency, "queries": exact_latency_queries},
        "speedup_p50": round(exact_latency["p50_ms"] / scann_latency["p50_ms"], 1),
        f"recall_at_{k}": round(recall, 4),
        "index_disk_mb": round(disk_mb, 1),
        "index_memory_mb": round(memory_mb, 1),
        "embeddings_mb": round(embeddings.nbytes / 2**20, 1),
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("scann_index", __doc__, REPORT)
    parser.add_argument("--items", type=int, default=1_000_000,
                        help="embeddings in the index (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=1_000,
                        help="queries timed with ScaNN and used for recall (default: %(default)s)")
    parser.add_argument("--exact-queries", type=int, default=200,
                        help="queries timed with exact numpy search (default: %(default)s)")
    parser.add_argument("--k", type=int, default=100,
                        help="neighbours per query (recall@k) (default: %(default)s)")
    args = parser.parse_args(argv)
    figures = run(n=args.items, dim=args.dim, num_queries=args.queries,
                  exact_latency_queries=args.exact_queries, k=args.k)
    report.write(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
