"""Materialization as the user base grows: time, rows/s and peak memory, whole read vs entity chunks,
one writer vs several.

For each size, synthetic ``user_profile`` and ``user_activity`` rows shaped like the Spark job's output
(one snapshot, ``feature_repo.sample_data``) are written to a temporary data root; then each mode
materializes them into a fresh online store in its own process, so its peak RSS is its own (with
several writers: the largest of the parent and its writer processes):

- ``sqlite-whole``: every entity at once (the behaviour before chunking), SQLite;
- ``sqlite-chunked``: ``feature_repo.store.CHUNK_ENTITIES`` entities per read, SQLite;
- ``redis-1``: chunked, one writer, into a fresh ``redis-server``;
- ``redis-N``: chunked, ``--writers`` processes writing disjoint entity ranges side by side.

The modes of one size run back to back, so their ratios are measured side by side.

Run: ``.venv/bin/python -m benchmarks.materialize --users 100000 300000`` (writes
``reports/bench/materialize.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks import report
from common.features import USER_ACTIVITY, USER_PROFILE
from common.paths import DataPaths

REPORT = report.REPORTS / "materialize.json"
SNAPSHOT = datetime(2025, 1, 15, tzinfo=UTC)
VIEWS = (USER_PROFILE, USER_ACTIVITY)
WHOLE = 10**12  # entities per read: all of them


def write_users(root: Path, users: int) -> None:
    from feature_repo.sample_data import synthetic_rows, write_source

    rng = np.random.default_rng(0)
    ids = [f"r_u{k:09d}" for k in range(users)]
    for spec in VIEWS:
        for start in range(0, users, 100_000):  # several part files, as Spark writes them
            write_source(DataPaths(root), spec, synthetic_rows(spec, ids[start:start + 100_000], SNAPSHOT, rng))


def materialize_once(root: Path, chunk_entities: int, writers: int, redis_url: str | None) -> dict[str, float]:
    """In this process: a fresh store over ``root`` (Redis at ``redis_url``, else SQLite), every user view
    materialized by ``writers`` processes."""
    from feature_repo.store import apply, get_store, materialize

    store = get_store(DataPaths(root), "redis" if redis_url else "sqlite", redis_url)
    apply(store, DataPaths(root))
    started = time.perf_counter()
    rows = materialize(store, SNAPSHOT - timedelta(days=1), SNAPSHOT + timedelta(days=1), [v.name for v in VIEWS],
                       chunk_entities, writers)
    seconds = time.perf_counter() - started
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"rows": sum(rows.values()), "seconds": round(seconds, 2), "rows_per_s": round(sum(rows.values()) / seconds),
            "peak_rss_mb": round(peak / 1024, 1)}


def _child(root: Path, chunk_entities: int, writers: int, redis_url: str | None) -> dict[str, float]:
    argv = [sys.executable, "-m", "benchmarks.materialize", "--child", str(root), str(chunk_entities), str(writers),
            redis_url or ""]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: list[int], chunk_entities: int, writers: int) -> dict[str, object]:
    from feature_repo.redis_server import local_redis

    modes = (("sqlite-whole", WHOLE, 1, False), ("sqlite-chunked", chunk_entities, 1, False),
             ("redis-1", chunk_entities, 1, True), (f"redis-{writers}", chunk_entities, writers, True))
    results = []
    for users in sizes:
        with tempfile.TemporaryDirectory(prefix="materialize-") as tmp:
            source = Path(tmp) / "source"
            write_users(source, users)
            for mode, chunk, mode_writers, redis in modes:
                root = Path(tmp) / mode
                root.mkdir()
                (root / "features").symlink_to(source / "features")
                with local_redis() if redis else nullcontext() as url:  # a fresh, empty server per mode
                    measured = _child(root, chunk, mode_writers, url)
                row = {"users": users, "mode": mode, "chunk_entities": min(chunk, users), "writers": mode_writers,
                       **measured}
                print(json.dumps(row), flush=True)
                results.append(row)
    return {"views": [v.name for v in VIEWS], "cpus": os.cpu_count(), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("materialize", __doc__, REPORT)
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 300_000], help="sizes (users)")
    parser.add_argument("--chunk", type=int, default=None, help="entities per chunked read (default: the store's)")
    parser.add_argument("--writers", type=int, default=os.cpu_count() or 2,
                        help="writer processes of the parallel Redis mode (default: the CPUs)")
    parser.add_argument("--child", nargs=4, metavar=("ROOT", "CHUNK", "WRITERS", "REDIS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        root, chunk, writers, url = args.child
        print(json.dumps(materialize_once(Path(root), int(chunk), int(writers), url or None)))
        return 0
    from feature_repo.store import CHUNK_ENTITIES

    payload = run(args.users, args.chunk or CHUNK_ENTITIES, args.writers)
    report.write(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
