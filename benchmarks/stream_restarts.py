"""Streaming job under kill -9: SIGKILLed at seeded random moments under a steady input rate, restarted
each time; at the end every acknowledged event is counted exactly once.

A writer thread appends events to ``incoming/retail/`` exactly as serving does
(``serving.stream.IncomingStreams.append``: whole lines, fsync'd, stamped with ``ingested_at``) at
``--rate`` events/s; an event is *acknowledged* once ``append`` returned (that is when serving
answers a ``POST /v1/events``). Meanwhile the real job (``python -m beam_jobs run``) is killed with
SIGKILL ``--kills`` times and restarted at once; each kill comes a seeded random delay after the job's
first commit since its (re)start, so it lands while the job streams (in a batch or between two), not
while the interpreter starts.
The writer then stops, the last job is stopped with SIGTERM and a final ``--once`` run drains the rest.

Checked against the acknowledged events (the same three views as ``tests/beam_jobs/test_restart.py``):

- lake: every acknowledged ``event_id`` exactly once, nothing else;
- dead letters: none (the input has no bad or repeated lines, so a ``duplicate_event_id`` would be a
  replay that leaked);
- online store: per item, ``popularity_1d`` / ``impressions_1d`` equal the acknowledged events' counts
  and ``inventory`` the catalog's minus the purchases (a batch applied twice would show here); per
  user (a seeded sample), ``session_depth`` equals their acknowledged non-impression events.

``python -m benchmarks.stream_restarts`` (10 kills at 500 events/s) writes
``reports/bench/stream_restarts.json``; the fault suite runs a short version
(``tests/faults/test_stream_kill9.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import report
from benchmarks.streaming import WRITE_EVERY_S, _events, prepare
from common.paths import REPO_ROOT, DataPaths

OUT_FILE = REPO_ROOT / "reports" / "bench" / "stream_restarts.json"
KILLS, RATE, SEED = 10, 500, 16
KILL_AFTER_S = (0.0, 4.0)  # a kill comes this long (uniform, seeded) after the job's first commit since its (re)start
START_TIMEOUT_S = 300.0
USER_SAMPLE = 300
POLL_INTERVAL = "0.5"


@dataclass
class Writer:
    """Appends events at ``rate`` per second until stopped; ``acknowledged`` holds what ``append`` returned for."""

    paths: DataPaths
    rate: int
    rng: np.random.Generator
    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from serving.stream import IncomingStreams

        streams = IncomingStreams(self.paths, rotate_bytes=1 << 20, rotate_seconds=3_600)  # rotation under kills too
        started, sent = time.monotonic(), 0
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - started + WRITE_EVERY_S) * self.rate) - sent
                if due > 0:
                    lines = _events(sent, due, self.rng)
                    streams.append("retail", lines)
                    self.acknowledged.extend(orjson.loads(line) for line in lines)
                    sent += due
                self.stop.wait(max(0.0, started + sent / self.rate - time.monotonic()))
        finally:
            streams.close()


def _job(paths: DataPaths, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beam_jobs", "run", "--data-dir", str(paths.root), "--poll-interval", POLL_INTERVAL,
         "--no-seed-users", *extra],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _checkpoint_state(paths: DataPaths) -> dict[str, Any]:
    from beam_jobs.checkpoint import CheckpointStore
    from beam_jobs.job import checkpoint_path

    if not checkpoint_path(paths).exists():
        return {"committed_batches": 0, "batch_pending": False}
    store = CheckpointStore(checkpoint_path(paths))
    try:
        return {"committed_batches": store.committed_batches(), "batch_pending": store.pending() is not None}
    finally:
        store.close()


def incoming_backlog(paths: DataPaths) -> int:
    """Bytes of the incoming files the streaming job's checkpoint does not cover yet: what it would plan
    next if it drained now (:func:`beam_jobs.tail.plan_ranges`, no size bound); 0 once it committed
    everything it was given."""
    from beam_jobs.checkpoint import CheckpointStore
    from beam_jobs.job import checkpoint_path
    from beam_jobs.tail import plan_ranges

    offsets = {}
    if checkpoint_path(paths).exists():
        store = CheckpointStore(checkpoint_path(paths))
        try:
            offsets = store.offsets()
        finally:
            store.close()
    return sum(r.end - r.start for r in plan_ranges(paths.incoming(), offsets, 1 << 62, settle_seconds=None))


def wait_drained(paths: DataPaths, timeout_s: float, poll_s: float = 0.5,
                 give_up: Callable[[], bool] = lambda: False) -> tuple[bool, int]:
    """Until the streaming job's checkpoint covers every incoming file (or ``timeout_s`` passed, or
    ``give_up()``: the job will not come back); whether it drained and the bytes left."""
    deadline = time.monotonic() + timeout_s
    while (left := incoming_backlog(paths)) > 0 and time.monotonic() < deadline and not give_up():
        time.sleep(poll_s)
    return left == 0, left


def _wait_for_commit(paths: DataPaths, job: subprocess.Popen, after: int) -> None:
    """Until the job commits a batch beyond ``after`` committed ones (it is streaming)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while _checkpoint_state(paths)["committed_batches"] <= after:
        if job.poll() is not None:
            raise RuntimeError(f"the job died on its own ({job.returncode}):\n{job.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job committed nothing within {START_TIMEOUT_S:.0f} s of its start")
        time.sleep(0.05)


def kill_and_restart(paths: DataPaths, kills: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Start the job, SIGKILL it ``kills`` times at seeded random moments (restarting it each time),
    then stop the last one with SIGTERM; what the checkpoint showed after each kill."""
    log = []
    job = _job(paths)
    try:
        for kill in range(kills):
            _wait_for_commit(paths, job, _checkpoint_state(paths)["committed_batches"])
            delay = float(rng.uniform(*KILL_AFTER_S))
            time.sleep(delay)
            job.send_signal(signal.SIGKILL)
            job.wait(timeout=60)
            log.append({"kill": kill + 1, "after_s": round(delay, 2), **_checkpoint_state(paths)})
            print(orjson.dumps(log[-1]).decode(), flush=True)
            job = _job(paths)
        _wait_for_commit(paths, job, _checkpoint_state(paths)["committed_batches"])
    finally:
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=300)
    if job.returncode not in (0, -signal.SIGTERM):  # -SIGTERM: stopped while starting, before its handler
        raise RuntimeError(f"the last job did not stop cleanly ({job.returncode}):\n{stderr.decode()[-2000:]}")
    return log


def drain(paths: DataPaths) -> None:
    done = subprocess.run([sys.executable, "-m", "beam_jobs", "run", "--data-dir", str(paths.root), "--once",
                           "--no-seed-users"], cwd=REPO_ROOT, capture_output=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the draining run failed:\n{done.stderr.decode()[-2000:]}")


def lake_check(paths: DataPaths, acknowledged_ids: Iterable[str]) -> dict[str, int]:
    """Acknowledged events missing from the retail lake, counted twice there, and lake events nobody
    acknowledged."""
    from common.lake import read_events

    acked = Counter(acknowledged_ids)
    lake = Counter(read_events(paths, "retail", columns=["event_id"])["event_id"])
    return {
        "acknowledged_events": sum(acked.values()),
        "lost_events": sum(1 for e in acked if e not in lake),
        "double_counted_events": sum(n - 1 for n in lake.values() if n > 1),
        "unacknowledged_in_lake": sum(1 for e in lake if e not in acked),
    }


def wrong_item_counters(paths: DataPaths, events: Sequence[Mapping[str, Any]],
                        items: Iterable[str] | None = None) -> list[str]:
    """The retail items (default: every item of ``events``) whose online ``popularity_1d`` /
    ``impressions_1d`` / ``inventory`` differ from ``events``' counts, ``events`` being everything the
    streaming job has seen (positives and impressions counted within the day, inventory the catalog's
    minus the purchases)."""
    from common.lake import read_catalog
    from common.online_features import MAX_ITEMS, OnlineFeatures
    from feature_repo.store import get_store

    items = sorted({r["item_id"] for r in events} if items is None else set(items))
    positives = Counter(r["item_id"] for r in events if r["event_type"] != "impression")
    impressions = Counter(r["item_id"] for r in events if r["event_type"] == "impression")
    sold = Counter(r["item_id"] for r in events if r["event_type"] == "purchase")
    catalog = read_catalog(paths, "retail").set_index("item_id")["inventory"]
    online = OnlineFeatures(get_store(paths))
    wrong = []
    for chunk in (items[k:k + MAX_ITEMS] for k in range(0, len(items), MAX_ITEMS)):
        columns = online.item_features(chunk).columns
        wrong += [
            item for k, item in enumerate(chunk)
            if (columns["popularity_1d"][k], columns["impressions_1d"][k], columns["inventory"][k])
            != (positives[item], impressions[item], max(int(catalog[item]) - sold[item], 0))
        ]
    return wrong


def check(paths: DataPaths, acknowledged: list[dict[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """Lost / double-counted events by the lake, the dead letters and the online counters."""
    from common.deadletter import read_dead_letters
    from common.online_features import OnlineFeatures
    from feature_repo.store import get_store

    lake = lake_check(paths, (r["event_id"] for r in acknowledged))
    dead = Counter(r["reason"]["code"] for r in read_dead_letters(paths, "streaming"))
    items = sorted({r["item_id"] for r in acknowledged})
    wrong_items = wrong_item_counters(paths, acknowledged, items)
    online = OnlineFeatures(get_store(paths))
    depth = Counter(r["user_id"] for r in acknowledged if r["event_type"] != "impression")
    users = sorted(depth)
    sample = [users[k] for k in rng.choice(len(users), size=min(USER_SAMPLE, len(users)), replace=False)]
    wrong_users = [u for u in sample if online.user_features(u).values["session_depth"] != depth[u]]
    return {
        **lake,
        "dead_letters": dict(dead),
        "items_checked": len(items),
        "items_with_wrong_counters": len(wrong_items),
        "users_checked": len(sample),
        "users_with_wrong_session_depth": len(wrong_users),
    }


def run(kills: int = KILLS, rate: int = RATE, seed: int = SEED) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="bench-restarts-") as tmp:
        paths = DataPaths(Path(tmp) / "data")
        prepare(paths, rng)
        writer = Writer(paths, rate, np.random.default_rng(seed + 1))
        thread = threading.Thread(target=writer.run, name="writer", daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            kill_log = kill_and_restart(paths, kills, rng)
        finally:
            writer.stop.set()
            thread.join()
        write_seconds = time.monotonic() - started
        drain(paths)
        result = check(paths, writer.acknowledged, rng)
    exact = (result["lost_events"] == 0 and result["double_counted_events"] == 0
             and result["unacknowledged_in_lake"] == 0 and not result["dead_letters"]
             and result["items_with_wrong_counters"] == 0 and result["users_with_wrong_session_depth"] == 0)
    return {
        "kills": kills, "rate_events_per_s": rate, "seed": seed, "write_seconds": round(write_seconds, 1),
        "achieved_rate_events_per_s": round(result["acknowledged_events"] / write_seconds, 1),
        "kills_with_a_batch_in_flight": sum(k["batch_pending"] for k in kill_log),
        "kill_log": kill_log, **result, "exactly_once": exact,
    }


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("stream_restarts", __doc__, OUT_FILE)
    parser.add_argument("--kills", type=int, default=KILLS, help="SIGKILLs (default: %(default)s)")
    parser.add_argument("--rate", type=int, default=RATE, help="input events/s (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of kill moments and events (default: %(default)s)")
    args = parser.parse_args(argv)
    result = run(args.kills, args.rate, args.seed)
    print(orjson.dumps({k: v for k, v in result.items() if k != "kill_log"}).decode())
    report.write(args.out, result)
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
