"""The clients of the load benchmarks (:mod:`benchmarks.overload`, :mod:`benchmarks.platform_load`):
closed-loop request clients, an event poster that retries refused batches, what the service wrote to
its incoming stream, the service's worker processes, and the load generator's scheduling priority."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks.open_loop import HttpPool, Outcome, _one

API_KEY = "overload-bench-key"  # RECSYS_API_KEY of the services the load benchmarks start


# ---- the closed-loop capacity probe -------------------------------------------------------------


async def _closed_loop(url: str, bodies: Sequence[bytes], connections: int, seconds: float,
                       timeout_s: float, shed_pause_s: float = 0.0) -> list[Outcome]:
    pool_of = [HttpPool(url) for _ in range(connections)]
    start = time.perf_counter()
    end = start + seconds
    outcomes: list[Outcome] = []

    async def client(n: int) -> None:
        i = n
        while time.perf_counter() < end:
            outcome = await _one(pool_of[n], bodies[i % len(bodies)], time.perf_counter() - start, start, timeout_s)
            outcomes.append(outcome)
            i += connections
            if outcome.status == "503" and shed_pause_s > 0:
                await asyncio.sleep(shed_pause_s)

    try:
        await asyncio.gather(*(client(n) for n in range(connections)))
    finally:
        for pool in pool_of:
            pool.close()
    return outcomes


def closed_loop_outcomes(url: str, bodies: Sequence[bytes], connections: int, seconds: float,
                         timeout_s: float = 10.0) -> list[Outcome]:
    """Every answer of ``connections`` back-to-back clients, each sending its next request when the last
    is answered (a transport error or timeout is an outcome too); runs in a generator process."""
    return asyncio.run(_closed_loop(url, bodies, connections, seconds, timeout_s))


def closed_loop(url: str, bodies: Sequence[bytes], connections: int, seconds: float) -> list[tuple[int, float]]:
    """Status (0: no answer) and latency of every answer of ``connections`` back-to-back clients that
    wait a while after a 503 (as a client honouring ``Retry-After`` does, in shorter steps): a client
    resending a refused request at once spins on 503s, and the CPU it costs the service is not capacity."""
    return [(int(o.status) if o.status.isdigit() else 0, o.latency)
            for o in asyncio.run(_closed_loop(url, bodies, connections, seconds, 10.0, shed_pause_s=0.05))]


# ---- events posted alongside ---------------------------------------------------------------------


@dataclass
class EventTally:
    posted: int = 0  # events in batches sent (a retried batch counts once)
    acknowledged: int = 0
    refused_batches: int = 0  # 503 answers (then retried)
    failed_batches: int = 0  # any other answer or transport error (not retried: not acknowledged)


class EventPoster:
    """Posts ``batch`` view events every ``interval_s`` from a thread; a 503 batch is retried after its
    ``Retry-After``. Keeps the ids of every acknowledged event."""

    def __init__(self, url: str, users: Sequence[str], items: Sequence[str], batch: int, interval_s: float) -> None:
        self.url, self.users, self.items, self.batch, self.interval_s = url, users, items, batch, interval_s
        self.acknowledged: list[str] = []
        self.acknowledged_events: list[dict[str, str]] = []
        self.tally = EventTally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-poster", daemon=True)
        self._rng = np.random.default_rng(11)

    def __enter__(self) -> EventPoster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _events(self) -> list[dict[str, str]]:
        now = datetime.now(UTC).isoformat()
        return [{"event_id": f"ovl-{uuid.uuid4().hex}", "domain": "retail", "event_type": "view", "timestamp": now,
                 "user_id": self.users[self._rng.integers(len(self.users))],
                 "item_id": self.items[self._rng.integers(len(self.items))]} for _ in range(self.batch)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=30.0) as http:
            while not self._stop.wait(self.interval_s):
                events = self._events()
                self.tally.posted += len(events)
                while True:
                    try:
                        response = http.post("/v1/events", json={"events": events})
                    except httpx.HTTPError:
                        self.tally.failed_batches += 1
                        break
                    if response.status_code != 503:
                        break
                    self.tally.refused_batches += 1
                    time.sleep(float(response.headers.get("retry-after", "1")))
                if response.status_code == 200:
                    self.tally.acknowledged += response.json()["accepted"]
                    self.acknowledged += [e["event_id"] for e in events]
                    self.acknowledged_events += events
                else:
                    self.tally.failed_batches += 1


def stream_events(data_root: Path, domain: str) -> list[dict[str, Any]]:
    """Every event in the domain's incoming stream files."""
    return [orjson.loads(line) for path in sorted((data_root / "incoming" / domain).glob("*.jsonl"))
            for line in path.read_bytes().splitlines() if line.strip()]


def stream_event_ids(data_root: Path, domain: str) -> set[str]:
    """Every event id in the domain's incoming stream files."""
    return {event.get("event_id") for event in stream_events(data_root, domain)}


# ---- the service's processes and the generator's priority ----------------------------------------


def worker_pids(pid: int) -> set[int]:
    """The uvicorn workers of the service ``pid`` (its children but multiprocessing's resource tracker
    and the nginx front); the service process itself when it runs one worker in-process; none once it
    is gone."""
    import psutil

    try:
        children = [(c.pid, " ".join(c.cmdline())) for c in psutil.Process(pid).children(recursive=False)]
    except psutil.NoSuchProcess:
        return set()
    workers = {p for p, command in children if "resource_tracker" not in command and "nginx" not in command}
    return workers or {pid}


def serving_front(pid: int) -> str:
    """``nginx`` when the service ``pid`` runs behind its nginx front, else ``none``."""
    import psutil

    try:
        return "nginx" if any("nginx" in c.name() for c in psutil.Process(pid).children(recursive=False)) else "none"
    except psutil.NoSuchProcess:
        return "none"


GENERATOR_PRIORITIES = ("realtime", "nice", "normal")


def prioritise(priority: str) -> None:
    """Initializer of a load generator process: ``realtime`` (SCHED_FIFO 20), else ``nice`` (-10), else
    ``normal``; each falls back to the next when not permitted (both need root). On a machine shared
    with the service, a prioritised generator stands in for a client on another machine."""
    if priority == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
            return
        except PermissionError:
            priority = "nice"
    if priority == "nice":
        try:
            os.nice(-10)
        except PermissionError:
            pass


def current_priority() -> str:
    """The priority the calling process runs at (as :func:`prioritise` names them)."""
    if os.sched_getscheduler(0) == os.SCHED_FIFO:
        return "realtime"
    return "nice" if os.nice(0) < 0 else "normal"
