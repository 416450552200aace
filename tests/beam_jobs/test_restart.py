"""Kill -9 and restart: the job runs as a subprocess, dies twice mid-stream (once at the worst moment,
after a batch's effects and before its commit; once at an arbitrary moment), is restarted, and
the lake, the dead letters and the online counters show zero loss and zero double counting."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from beam_jobs.checkpoint import CheckpointStore
from beam_jobs.job import CRASH_ENV, FileStreamJob, StreamConfig, checkpoint_path
from common.deadletter import read_dead_letters
from common.lake import read_events
from common.online_features import OnlineFeatures
from common.paths import REPO_ROOT
from common.polling import wait_until
from feature_repo.store import get_store

USERS = [f"r_u{k}" for k in range(12)]
ITEMS = ["r_i1", "r_i2", "r_i4"]  # catalog inventory 5, 2, 40; only r_i4 is bought (1 unit each)
KINDS = ["view", "click", "impression", "view", "purchase"]


def _records(start: int, count: int, base: datetime) -> list[dict[str, Any]]:
    out = []
    for n in range(start, start + count):
        kind = KINDS[n % len(KINDS)]
        record = {"event_id": f"e{n}", "domain": "retail", "user_id": USERS[n % len(USERS)],
                  "item_id": "r_i4" if kind == "purchase" else ITEMS[n % len(ITEMS)], "event_type": kind,
                  "timestamp": (base + timedelta(seconds=n)).isoformat(), "session_id": f"s-{USERS[n % len(USERS)]}"}
        if kind in ("impression", "click"):
            record.update(request_id=f"q{n}", position=1)
        out.append(record)
    return out


def _append(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())


def _start(paths, *args: str, crash_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "beam_jobs", "run", "--data-dir", str(paths.root), "--poll-interval", "0.2",
         "--no-seed-users", *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _wait(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 180.0) -> None:
    def exited() -> str | None:
        if process.poll() is None:
            return None
        return f"job exited early ({process.returncode}):\n{process.stdout.read().decode()}"

    wait_until(condition, timeout, "the job's commits", poll=0.1, give_up=exited)


def _committed(paths) -> int:
    if not checkpoint_path(paths).exists():
        return 0
    store = CheckpointStore(checkpoint_path(paths))
    try:
        return store.committed_batches()
    finally:
        store.close()


def test_kill_and_restart_loses_nothing_and_counts_nothing_twice(feast_paths) -> None:
    paths = feast_paths
    incoming = paths.incoming("retail") / "events.jsonl"
    incoming.parent.mkdir(parents=True, exist_ok=True)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    records = _records(0, 400, base)
    lines = [orjson.dumps(r) for r in records]
    bad = [b"{torn", orjson.dumps({**records[5], "quantity": "x"}), lines[7], lines[300]]  # 2 invalid, 2 repeats
    _append(incoming, lines[:100])

    # run 1: dies by SIGKILL after batch 2's effects (lake file, pushes) and before its commit
    job = _start(paths, crash_at="before_commit:2")
    _wait(lambda: _committed(paths) >= 1, job)
    _append(incoming, lines[100:200])
    assert job.wait(timeout=180) == -signal.SIGKILL
    store = CheckpointStore(checkpoint_path(paths))
    assert store.pending() is not None and store.committed_batches() == 1
    store.close()
    assert list(paths.events.rglob("batch-0000000002.parquet"))  # effects of the uncommitted batch exist

    # run 2: recovers batch 2, keeps streaming, and is SIGKILLed at an arbitrary moment
    job = _start(paths)
    _wait(lambda: _committed(paths) >= 2, job)
    _append(incoming, lines[200:300] + bad[:2])
    _wait(lambda: _committed(paths) >= 3, job)
    _append(incoming, lines[300:350] + bad[2:])
    time.sleep(random.Random(16).uniform(0.0, 1.0))  # an arbitrary moment, the same on every run
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)

    # run 3 (in this process, to spare a third interpreter start): drains what is left and stops
    _append(incoming, lines[350:])
    FileStreamJob(StreamConfig(paths, once=True, seed_users=False)).run()

    lake = read_events(paths, "retail")
    assert len(lake) == 400 and set(lake["event_id"]) == {r["event_id"] for r in records}  # no loss, no repeat
    codes = Counter(r["reason"]["code"] for r in read_dead_letters(paths, "streaming"))
    assert codes == {"duplicate_event_id": 2, "malformed_json": 1, "wrong_type": 1}

    online = OnlineFeatures(get_store(paths))
    items = online.item_features(ITEMS).columns
    for k, item in enumerate(ITEMS):
        mine = [r for r in records if r["item_id"] == item]
        assert items["popularity_1d"][k] == sum(r["event_type"] != "impression" for r in mine), item
        assert items["impressions_1d"][k] == sum(r["event_type"] == "impression" for r in mine), item
    sold = sum(r["event_type"] == "purchase" for r in records)
    assert items["inventory"][2] == max(40 - sold, 0)
    for user in USERS:
        depth = sum(r["user_id"] == user and r["event_type"] != "impression" for r in records)
        assert online.user_features(user).values["session_depth"] == depth, user
