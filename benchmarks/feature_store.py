"""Online feature reads: SQLite vs Redis, side by side in one run, on demo-sized data.

What serving does per request: read one user's features (every user-keyed view of the feature
services, ``OnlineFeatures.user_features``) and the item features of 500 candidates
(``OnlineFeatures.item_features``). Both stores hold the same materialized rows and are measured
interleaved (alternating which goes first), so machine noise hits both alike; the 1-minute load
average is recorded because on a shared machine it moves absolute figures a lot. The item reads are
measured without the in-process item cache (raw store reads) and, once, with a warm cache.

Data: the pipeline's offline sources under ``RECSYS_DATA_DIR`` if every batch view has some, else
synthetic rows shaped like the demo profile (20k users, 5k items) written to a temporary directory.
Stores (registries, SQLite file, Redis) are always temporary: the real online store is not touched.

Run: ``.venv/bin/python -m benchmarks.feature_store`` (writes ``reports/bench/feature_store.json``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks import report
from common.features import BATCH_VIEWS, EVENT_TIMESTAMP, ITEM_ID, USER_ID
from common.paths import REPO_ROOT, DataPaths
from feature_repo.redis_server import local_redis, redis_server_binary

if TYPE_CHECKING:
    from common.online_features import OnlineFeatures

# feast and pyarrow load inside the functions that use them, so that ``--help`` answers at once.

REPORT = REPO_ROOT / "reports" / "bench" / "feature_store.json"
DEMO_USERS, DEMO_ITEMS = 20_000, 5_000
SNAPSHOT = datetime(2025, 1, 15, tzinfo=UTC)


def _has_pipeline_output(paths: DataPaths) -> bool:
    return all(any(paths.feature_source(s.name).glob("*.parquet")) for s in BATCH_VIEWS)


def _write_synthetic(paths: DataPaths, users: int, items: int) -> None:
    from feature_repo.sample_data import synthetic_rows, write_source

    rng = np.random.default_rng(0)
    ids = {USER_ID: [f"r_u{k}" for k in range(users)], ITEM_ID: [f"r_i{k}" for k in range(items)]}
    for spec in BATCH_VIEWS:
        write_source(paths, spec, synthetic_rows(spec, ids[spec.entity], SNAPSHOT, rng))


def _entities_and_window(paths: DataPaths) -> tuple[dict[str, list[str]], datetime, datetime]:
    """Distinct ids per join key and the [first, last] event_timestamp over all sources."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    ids: dict[str, set[str]] = {USER_ID: set(), ITEM_ID: set()}
    first, last = [], []
    for spec in BATCH_VIEWS:
        table = ds.dataset(paths.feature_source(spec.name), format="parquet").to_table(
            columns=[spec.entity, EVENT_TIMESTAMP]
        )
        ids[spec.entity].update(table[spec.entity].to_pylist())
        low, high = pc.min_max(table[EVENT_TIMESTAMP]).values()
        first.append(low.as_py())
        last.append(high.as_py())
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (min(first), max(last)))
    return {key: sorted(values) for key, values in ids.items()}, start, end + timedelta(seconds=1)


def _percentiles(times_s: list[float]) -> dict[str, float]:
    return report.latency_ms(t * 1000 for t in times_s)


def _timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def _interleaved(
    readers: dict[str, OnlineFeatures], ids: dict[str, list[str]], user_reads: int, item_reads: int
):
    """Latencies per store; each round reads the same user / the same 500 items from every store."""
    from common.online_features import MAX_ITEMS

    rng = np.random.default_rng(1)
    user_times: dict[str, list[float]] = {name: [] for name in readers}
    item_times: dict[str, list[float]] = {name: [] for name in readers}
    order = list(readers)
    for round_ in range(max(user_reads, item_reads)):
        order.reverse()  # alternate which store goes first
        user_id = ids[USER_ID][rng.integers(len(ids[USER_ID]))]
        candidates = list(rng.choice(ids[ITEM_ID], size=min(MAX_ITEMS, len(ids[ITEM_ID])), replace=False))
        for name in order:
            if round_ < user_reads:
                user_times[name].append(_timed(readers[name].user_features, user_id))
            if round_ < item_reads:
                item_times[name].append(_timed(readers[name].item_features, candidates))
    return user_times, item_times


def run(
    paths: DataPaths | None = None, user_reads: int = 500, item_reads: int = 100, warmup: int = 10
) -> dict:
    """One benchmark run over ``paths`` (default ``RECSYS_DATA_DIR``); returns the figures."""
    from common.online_features import MAX_ITEMS, OnlineFeatures
    from feature_repo.store import apply, get_store, materialize

    paths = paths or DataPaths.default()
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        scratch = DataPaths(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-feast-"))))
        if _has_pipeline_output(paths):
            data, source = paths, "pipeline output"
        else:
            print(
                f"no pipeline output under {paths.features}: writing synthetic demo-sized rows ...",
                flush=True,
            )
            data, source = scratch, "synthetic"
            _write_synthetic(data, DEMO_USERS, DEMO_ITEMS)
        ids, start, end = _entities_and_window(data)
        print(f"{source}: {len(ids[USER_ID]):,} users, {len(ids[ITEM_ID]):,} items", flush=True)

        kinds = ["sqlite"] + (["redis"] if redis_server_binary() else [])
        redis_url = stack.enter_context(local_redis()) if "redis" in kinds else None
        readers: dict[str, OnlineFeatures] = {}
        materialize_s: dict[str, float] = {}
        for kind in kinds:
            store = get_store(scratch, kind, redis_url)
            apply(store, data)
            print(f"materializing into {kind} ...", flush=True)
            materialize_s[kind] = round(_timed(materialize, store, start, end), 2)
            readers[kind] = OnlineFeatures(store)

        print(
            f"timing {user_reads} user reads and {item_reads} reads of {MAX_ITEMS} items per store ...",
            flush=True,
        )
        _interleaved(readers, ids, warmup, warmup)
        user_times, item_times = _interleaved(readers, ids, user_reads, item_reads)

        cached = OnlineFeatures(readers["sqlite"].store, item_cache_seconds=3600)
        catalog = ids[ITEM_ID][:MAX_ITEMS]
        cached.item_features(catalog)
        cached_times = [_timed(cached.item_features, catalog) for _ in range(item_reads)]

    result = {
        "data": source,
        "users": len(ids[USER_ID]),
        "items": len(ids[ITEM_ID]),
        "user_reads": user_reads,
        "item_reads": item_reads,
        "candidates_per_read": MAX_ITEMS,
        "stores": {
            kind: {
                "materialize_s": materialize_s[kind],
                "user_features": _percentiles(user_times[kind]),
                "item_features_500": _percentiles(item_times[kind]),
            }
            for kind in kinds
        },
        "item_features_500_warm_cache": _percentiles(cached_times),
        "redis": "measured" if "redis" in kinds else "skipped: redis-server not installed",
        "load_average_1m": {
            "start": round(load_before, 2),
            "end": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        },
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("feature_store", __doc__, REPORT)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data root whose feature sources to read (default: RECSYS_DATA_DIR); "
                             "synthetic demo-sized rows if it has no pipeline output")
    parser.add_argument("--user-reads", type=int, default=500,
                        help="timed user-feature reads per store (default: %(default)s)")
    parser.add_argument("--item-reads", type=int, default=100,
                        help="timed 500-item reads per store (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed rounds of both reads first (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = DataPaths(args.data_dir.resolve()) if args.data_dir else None
    figures = run(paths, user_reads=args.user_reads, item_reads=args.item_reads, warmup=args.warmup)
    report.write(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
