"""Query-tower latency for one user: the SavedModel signature against the fast NumPy tower, one run.

Trains a two-tower retriever of the default architecture (id 32, hidden 128, embedding 64; history
of 20 items with their taxonomy; numeric and categorical profile columns) for one epoch on a synthetic
world -- latency does not depend on training -- and writes both query-tower exports as a release does
(:func:`models.retrieval.export.export_query_towers`, which also checks their parity). Then it embeds
the same per-request inputs (known and unknown users, full and short histories, profiles with gaps)
with each tower, one user per call as serving does, calls interleaved so both see the same machine
load, with TensorFlow limited to one intra-op and one inter-op thread as in the serving process.

``python -m benchmarks.query_tower`` writes ``reports/bench/query_tower.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import report
from common.paths import REPO_ROOT

OUT_FILE = REPO_ROOT / "reports" / "bench" / "query_tower.json"
CATEGORIES = [f"L{a}>L{a}{b}>L{a}{b}{c}" for a in range(6) for b in range(4) for c in range(3)]


def synthetic_world(items: int, users: int, per_user: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(catalog, user profiles, interactions)``: random, with the shapes the real domains have."""
    rng = np.random.default_rng(seed)
    catalog = pd.DataFrame({
        "item_id": [f"r_i{i}" for i in range(items)], "domain": "retail", "title": [f"item {i}" for i in range(items)],
        "description": "", "category": rng.choice(CATEGORIES, items), "price": rng.uniform(5, 200, items),
        "margin": 0.2, "inventory": 5, "launched_at": pd.Timestamp("2024-01-01", tz="UTC"),
    })
    profiles = pd.DataFrame({
        "user_id": [f"r_u{u}" for u in range(users)],
        "age": np.where(rng.random(users) < 0.1, np.nan, rng.integers(18, 80, users)),
        "purchase_count_30d": rng.poisson(2, users).astype(float), "lifetime_events": rng.poisson(40, users).astype(float),
        "country": rng.choice(["DE", "FR", "IT", "ES"], users), "age_band": rng.choice(["18-24", "25-34", "35-54"], users),
    })
    n = users * per_user
    start = pd.Timestamp("2024-05-01", tz="UTC")
    interactions = pd.DataFrame({
        "user_id": [f"r_u{u}" for u in rng.integers(0, users, n)],
        "item_id": [f"r_i{i}" for i in (rng.zipf(1.3, n) % items)],
        "event_type": "view", "weight": 1.0,
        "timestamp": start + pd.to_timedelta(rng.integers(0, 30 * 86_400, n), unit="s"),
    })
    return catalog, profiles, interactions


def request_inputs(profiles: pd.DataFrame, items: int, history_length: int, n: int, seed: int) -> list[tuple]:
    """``n`` per-request inputs: 90% known users (10% brand-new), histories of 0..20 items, raw profiles."""
    rng = np.random.default_rng(seed + 1)
    rows = profiles.set_index("user_id")
    out = []
    for i in range(n):
        known = rng.random() >= 0.1
        user = rows.index[rng.integers(len(rows))] if known else f"r_u_new{i}"
        profile = rows.loc[user].to_dict() if known else {}
        history = [f"r_i{j}" for j in rng.integers(0, items, rng.integers(0, history_length + 1))]
        out.append((user, history, profile))
    return out


def _summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    ms = np.asarray(wall) * 1e3
    return {**report.latency_ms(ms), "mean_ms": round(float(ms.mean()), 4),
            "cpu_p50_ms": round(float(np.median(cpu)) * 1e3, 4)}


def run(repeats: int = 2000, items: int = 5000, users: int = 4000, seed: int = 0) -> dict:
    """Train, export both towers, time them on the same inputs; returns the figures."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")  # as serving.app.limit_tensorflow_threads
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    from models.retrieval.export import (
        FAST_QUERY_DIR,
        QUERY_TOWER_DIR,
        SavedModelQueryTower,
        export_query_towers,
    )
    from models.retrieval.fast_query import FastQueryTower
    from models.retrieval.two_tower import TwoTowerConfig, train_two_tower

    catalog, profiles, interactions = synthetic_world(items, users, 12, seed)
    config = TwoTowerConfig(epochs=1, seed=seed)
    print(f"[bench query_tower] training on {len(interactions):,} interactions, {items:,} items, {users:,} users",
          flush=True)
    two_tower = train_two_tower(interactions, catalog, profiles, config, verbose=0)
    inputs = request_inputs(profiles, items, config.history_length, 256, seed)
    spec = two_tower.user_spec
    encoded = [(u, h, *(a[0] for a in spec.encode_one(p))) for u, h, p in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_query_towers(Path(tmp), two_tower)
        towers = {"saved_model": SavedModelQueryTower(Path(tmp) / QUERY_TOWER_DIR, config.history_length),
                  "fast_numpy": FastQueryTower(Path(tmp) / FAST_QUERY_DIR)}
        worst = max(float(np.max(np.abs(towers["saved_model"].embed_one(*x) - towers["fast_numpy"].embed_one(*x))))
                    for x in encoded)
        print(f"[bench query_tower] timing {list(towers)} x {repeats} one-user calls", flush=True)
        wall: dict[str, list[float]] = {name: [] for name in towers}
        cpu: dict[str, list[float]] = {name: [] for name in towers}
        for i in range(repeats + 50):  # 50 warm-up rounds
            x = encoded[i % len(encoded)]
            for name, tower in towers.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                tower.embed_one(*x)
                if i >= 50:
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
        encode_wall = []  # what Retrievers.query_embedding adds: the profile mapping -> the tower's arrays
        for _, _, profile in inputs * 4:
            start = time.perf_counter()
            spec.encode_one(profile)
            encode_wall.append(time.perf_counter() - start)
    latency = {name: _summary(wall[name], cpu[name]) for name in towers}
    return {
        "architecture": {"id_dim": config.id_dim, "hidden": config.hidden, "embedding_dim": config.embedding_dim,
                         "history_length": config.history_length, "numeric": list(spec.numeric),
                         "categorical": list(spec.categorical)},
        "latency": latency,
        "speedup_p50": round(latency["saved_model"]["p50_ms"] / max(latency["fast_numpy"]["p50_ms"], 1e-6), 1),
        "profile_encoding": report.latency_ms(np.asarray(encode_wall) * 1e3, digits=4),
        "parity": {"max_abs_diff_timed_inputs": worst, "export_check": exported["parity"]},
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other jobs on the machine inflate wall times
    }


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("query_tower", __doc__, OUT_FILE)
    parser.add_argument("--repeats", type=int, default=2000,
                        help="timed calls per tower (after 50 warm-up rounds) (default: %(default)s)")
    parser.add_argument("--items", type=int, default=5000, help="catalog size (default: %(default)s)")
    parser.add_argument("--users", type=int, default=4000, help="users in the vocabulary (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and the inputs (default: %(default)s)")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats, items=args.items, users=args.users, seed=args.seed)
    for name, figures in result["latency"].items():
        print(f"{name:>12}: p50 {figures['p50_ms']:.4f} ms  p99 {figures['p99_ms']:.4f} ms  "
              f"cpu p50 {figures['cpu_p50_ms']:.4f} ms")
    print(f"parity max |diff| {result['parity']['max_abs_diff_timed_inputs']:.2e}; "
          f"load average {result['load_average_1m']}")
    report.write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
