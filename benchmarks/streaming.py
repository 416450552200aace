"""Streaming job: sustained events/s and freshness p50/p99 at several input rates.

For each rate a fresh data root gets a 5,000-item retail catalog and a registered Feast SQLite
store; the job starts as its own process (``python -m beam_jobs run``, DirectRunner, files source)
and, once it idles, a writer appends events to ``incoming/retail/`` exactly as serving does
(``serving.stream``: whole lines, fsync'd, stamped with ``ingested_at``) at the rate for a bounded
time. The job is then given time to drain and stopped with SIGTERM; its JSON summary gives the
freshness of every pushed row (arrival -> readable online). The job's CPU time while streaming
(from ``/proc``) gives the share of the 2 shared cores it actually got and its events per CPU-second,
which separates the job's cost from the machine's load (reported too).

Target: p99 freshness <= 10 s at 500 events/s.
``python -m benchmarks.streaming`` writes ``reports/bench/streaming.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import report
from common.paths import REPO_ROOT, DataPaths

RATES = (100, 500, 1000)
SECONDS = 20.0
POLL_INTERVAL = 0.5
TARGET_RATE, TARGET_P99_S = 500, 10.0
N_ITEMS, N_USERS = 5_000, 20_000
KINDS = ("impression", "view", "click", "add_to_cart", "purchase")
KIND_WEIGHTS = (0.60, 0.25, 0.10, 0.03, 0.02)
OUT_FILE = REPO_ROOT / "reports" / "bench" / "streaming.json"
WRITE_EVERY_S = 0.05


def prepare(paths: DataPaths, rng: np.random.Generator) -> None:
    """A retail catalog and a registered (empty) Feast SQLite store."""
    import pandas as pd  # pandas, pyarrow and feast load here, not at import: ``--help`` answers at once

    from common.lake import write_catalog
    from feature_repo.store import apply, get_store

    launched = datetime.now(UTC) - timedelta(days=90)
    categories = [f"Cat{a}>Sub{b}" for a in range(10) for b in range(8)]
    write_catalog(pd.DataFrame({
        "item_id": [f"r_i{k}" for k in range(N_ITEMS)], "domain": "retail", "title": "item", "description": "",
        "category": [categories[k % len(categories)] for k in range(N_ITEMS)], "price": 20.0, "margin": 0.2,
        "inventory": rng.integers(0, 200, N_ITEMS), "launched_at": launched,
    }), paths, "retail")
    apply(get_store(paths), paths)


def _events(start: int, count: int, rng: np.random.Generator) -> list[bytes]:
    now = datetime.now(UTC).isoformat()
    kinds = rng.choice(len(KINDS), size=count, p=KIND_WEIGHTS)
    users = rng.integers(0, N_USERS, count)
    items = np.minimum(rng.zipf(1.3, count), N_ITEMS) - 1
    lines = []
    for k in range(count):
        kind, user = KINDS[kinds[k]], f"r_u{users[k]}"
        record = {"event_id": f"bench-{start + k}", "domain": "retail", "user_id": user, "item_id": f"r_i{items[k]}",
                  "event_type": kind, "timestamp": now, "session_id": f"s-{user}", "ingested_at": now}
        if kind in ("impression", "click"):
            record.update(request_id=f"q{start + k}", position=1 + k % 10)
        lines.append(orjson.dumps(record))
    return lines


def _wait(condition, timeout: float, job: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if job.poll() is not None:
            raise RuntimeError(f"the streaming job exited with {job.returncode}")
        time.sleep(0.1)
    return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(paths: DataPaths) -> dict[str, Any]:
    path = paths.root / "streaming" / "summary.json"
    return orjson.loads(path.read_bytes()) if path.exists() else {}


def run_rate(rate: int, seconds: float, rng: np.random.Generator) -> dict[str, Any]:
    """One bounded run at ``rate`` events/s; the job's figures plus the writer's."""
    from serving.stream import IncomingStreams

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        paths = DataPaths(Path(tmp) / "data")
        prepare(paths, rng)
        job = subprocess.Popen(
            [sys.executable, "-m", "beam_jobs", "run", "--data-dir", str(paths.root),
             "--poll-interval", str(POLL_INTERVAL)],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            if not _wait(lambda: bool(_summary(paths)), 300.0, job):
                raise RuntimeError("the streaming job did not start within 300 s")
            cpu_ready = _cpu_seconds(job.pid)
            streams = IncomingStreams(paths, rotate_bytes=64 << 20, rotate_seconds=3_600)
            started = time.monotonic()
            sent = 0
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(min(elapsed + WRITE_EVERY_S, seconds) * rate) - sent
                if due > 0:
                    streams.append("retail", _events(sent, due, rng))
                    sent += due
                time.sleep(max(0.0, started + (sent / rate) - time.monotonic()))
            write_seconds = time.monotonic() - started
            streams.close()
            drained = _wait(lambda: _summary(paths).get("events", 0) >= sent, max(60.0, 3 * seconds), job)
            drain_seconds = time.monotonic() - started
            cpu = _cpu_seconds(job.pid) - cpu_ready
        finally:
            job.send_signal(signal.SIGTERM)
            _, stderr = job.communicate(timeout=300)
        summary = _summary(paths)
    if job.returncode != 0:
        raise RuntimeError(f"the streaming job failed:\n{stderr.decode()[-2000:]}")
    fresh = summary["freshness_seconds"]["all"]
    return {
        "rate_target": rate,
        "events_sent": sent,
        "events_processed": summary["events"],
        "drained": drained,
        "write_seconds": round(write_seconds, 2),
        "sustained_events_per_s": round(summary["events"] / drain_seconds, 1),
        "capacity_events_per_s": round(summary["capacity_events_per_second"], 1),
        "batches": summary["batches"],
        "freshness_s": {k: round(v, 3) if isinstance(v, float) else v for k, v in fresh.items()},
        "pushed_rows": summary["pushed"],
        "dead_letters": summary["dead_letters"],
        "job_cpu_seconds": round(cpu, 2),  # from the first write to the drain (start-up excluded)
        "job_cpu_share": round(cpu / drain_seconds, 2),  # cores the job got while streaming
        "events_per_cpu_second": round(summary["events"] / cpu, 1) if cpu > 0 else None,
    }


def run(rates: tuple[int, ...] = RATES, seconds: float = SECONDS, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    load_at_start = os.getloadavg()
    results = []
    for rate in rates:
        results.append(run_rate(rate, seconds, rng))
        print(json.dumps(results[-1]), flush=True)
    at_target = next((r for r in results if r["rate_target"] == TARGET_RATE), None)
    return {
        "runner": "DirectRunner (FnApiRunner), files source, one bounded pipeline per micro-batch",
        "poll_interval_s": POLL_INTERVAL,
        "seconds_per_rate": seconds,
        "load_average_at_start": load_at_start,  # the 2 cores are shared with other work
        "load_average_at_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "rates": results,
        "target": {"rate": TARGET_RATE, "p99_freshness_s": TARGET_P99_S},
        "meets_target": bool(at_target and at_target["drained"]
                             and at_target["freshness_s"].get("p99", float("inf")) <= TARGET_P99_S),
    }


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("streaming", __doc__, OUT_FILE)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES),
                        help="input rates (events/s), one run each (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help="how long events are written at each rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the catalog and event draws (default: %(default)s)")
    args = parser.parse_args(argv)
    result = run(tuple(args.rates), args.seconds, args.seed)
    report.write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
