"""The newcomer's platform under load (issue 16): what ``make run`` starts, under 256 closed-loop connections.

Starts the two long-running children of ``recsys run`` with the very command lines ``recsys run`` uses
(:func:`cli.run.platform_children`: ``python -m cli stream run`` and ``python -m cli serving serve
--port P`` with serving's default workers) under :class:`common.supervisor.Supervisor`, supervised on a
thread as ``recsys run`` does (:func:`cli.run.supervising`), on a fresh copy of the serving benchmark's
scratch world (:mod:`benchmarks.serving_world`: a promoted retail release, features in the embedded
SQLite online store; its Feast views registered on the copy as ``recsys run`` does). After a short
warm-up, ``--connections`` clients (256) each send their next ``POST /v1/recommendations`` when the last
is answered, for ``--seconds``, while a client posts event batches to ``/v1/events`` (a batch refused
with 503 is retried after its ``Retry-After``). Then the streaming job drains what it was given (its
checkpoint covers every incoming file: events and the impressions serving logged) and:

- every process is alive: both children and serving's workers, nothing restarted (a child that kept
  crashing -- ``ChildFailed`` -- is a failure);
- every acknowledged event is in the lake, once (:func:`benchmarks.stream_restarts.lake_check`);
- the online store reflects them: per item, ``popularity_1d`` / ``impressions_1d`` / ``inventory``
  equal the counts of everything streamed (the acknowledged events plus the logged impressions,
  :func:`benchmarks.stream_restarts.wrong_item_counters`), and per user ``last_event_ts`` is the time
  of their last acknowledged event;
- the client's figures: answers 200 / 503 / other, admitted p50/p99, the share of admitted answers that
  say they are degraded, the peak RSS of both children's process
  trees, events posted / acknowledged / refused.

``python -m benchmarks.platform_load`` writes ``reports/bench/platform_load.json`` (``meets_target``:
``all_alive``, ``no_lost_events_lake``, ``no_lost_events_online``, ``no_other_errors``) and exits 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.load_clients import (
    API_KEY,
    EventPoster,
    EventTally,
    closed_loop_outcomes,
    stream_events,
    worker_pids,
)
from benchmarks.open_loop import Outcome, percentiles_ms
from benchmarks.overload import ROUTE
from benchmarks.process_steps import TreeMonitor
from benchmarks.report import write
from benchmarks.serving_requests import world_requests
from benchmarks.stream_restarts import incoming_backlog, lake_check, wait_drained, wrong_item_counters
from common.paths import REPO_ROOT, DataPaths
from common.supervisor import ChildSpec, Supervisor

OUT_FILE = REPO_ROOT / "reports" / "bench" / "platform_load.json"
DOMAIN = "retail"
CONNECTIONS = 256
SERVING, STREAMING = "serving API", "streaming job"  # the names cli.run.platform_children gives them
READY_TIMEOUT_S = 300.0
NOT_COPIED = ("incoming", "streaming", "dead_letter", "lake/events")  # a fresh platform: no stream yet


@dataclass(frozen=True)
class Options:
    seconds: float = 60.0
    connections: int = CONNECTIONS
    warmup_seconds: float = 5.0
    warmup_connections: int = 8
    event_batch: int = 20
    event_interval_s: float = 0.5
    unknown_share: float = 0.1
    timeout_s: float = 10.0
    drain_timeout_s: float = 600.0
    seed: int = 0


# ---- the platform -------------------------------------------------------------------------------


def copy_world(source: Path, target: Path) -> DataPaths:
    """A fresh data root from a scratch world's: lake tables and online store, without any stream state."""
    def ignore(directory: str, names: list[str]) -> list[str]:
        relative = Path(directory).relative_to(source)
        return [n for n in names if (relative / n).as_posix() in NOT_COPIED]

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=ignore)
    return DataPaths(target)


def start_logged(log_dir: Path) -> Callable[[ChildSpec], subprocess.Popen]:
    """``Supervisor``'s ``start``: each child in its own session (as ``recsys run``), its output in
    ``log_dir/<name>.log`` instead of the terminal."""
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(spec: ChildSpec) -> subprocess.Popen:
        with (log_dir / f"{spec.name.replace(' ', '_')}.log").open("ab") as log:
            return subprocess.Popen(list(spec.argv), env=None if spec.env is None else dict(spec.env), cwd=REPO_ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    return start


def _live_pids(supervisor: Supervisor) -> list[int]:
    return [p.pid for p in supervisor.processes().values() if p is not None and p.poll() is None]


def wait_ready(url: str, supervisor: Supervisor, failures: Sequence[Exception], timeout_s: float) -> dict[str, Any]:
    """Until serving's ``/readyz`` has the loaded domain answerable (its release loaded); the body. The
    scratch world has no banking data: serving, which serves every writable domain as under ``recsys
    run``, reports banking missing (its requests would get 503) and so answers 503 as a whole."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if failures:
            raise RuntimeError(f"a child failed before serving was ready: {failures[0]}")
        try:
            body = httpx.get(f"{url}/readyz", timeout=2.0).json()
            if DOMAIN in body.get("releases", {}) and DOMAIN not in body.get("missing", []):
                return body
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"serving at {url} was not ready within {timeout_s:.0f} s (restarts: {supervisor.restarts})")


def wait_quiet(paths: DataPaths, quiet_s: float = 1.0, timeout_s: float = 15.0) -> None:
    """Until the incoming files stop growing for ``quiet_s`` (serving's impression writer flushed)."""
    def size() -> int:
        return sum(p.stat().st_size for p in paths.incoming().glob("*/*.jsonl"))

    deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = size()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def alive_state(supervisor: Supervisor, failures: Sequence[Exception], workers_at_start: set[int]) -> dict[str, Any]:
    """Which children run now, restarts, a child that failed for good, serving workers replaced."""
    processes = supervisor.processes()
    serving = processes.get(SERVING)
    workers = worker_pids(serving.pid) if serving is not None and serving.poll() is None else set()
    return {
        "children_alive": {name: p is not None and p.poll() is None for name, p in processes.items()},
        "restarts": supervisor.restarts,
        "child_failed": str(failures[0]) if failures else None,
        "serving_workers_at_start": len(workers_at_start),
        "serving_workers_alive": len(workers),
        "serving_workers_replaced": len(workers_at_start - workers),
    }


# ---- checks and summaries -------------------------------------------------------------------------


def summarize_requests(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """What the closed-loop clients saw: 200 / 503 / other, admitted latency, degraded share, paths."""
    ok = [o for o in outcomes if o.status == "200"]
    shed = [o for o in outcomes if o.status == "503"]
    other = Counter(o.status for o in outcomes if o.status not in ("200", "503"))
    paths = Counter(o.path for o in ok)
    degraded = sum(o.degraded for o in ok)
    return {
        "seconds": seconds,
        "answers": len(outcomes),
        "ok": len(ok),
        "shed": len(shed),
        "other": sum(other.values()),
        "other_kinds": dict(other),
        "ok_rps": round(len(ok) / seconds, 1),
        "answers_rps": round(len(outcomes) / seconds, 1),
        "shed_share": round(len(shed) / len(outcomes), 4) if outcomes else None,
        "admitted_latency_ms": percentiles_ms(o.latency for o in ok),
        "shed_latency_ms": percentiles_ms(o.latency for o in shed),
        "degraded_share": round(degraded / len(ok), 4) if ok else None,
        "paths": dict(paths),
    }


def wrong_last_event(paths: DataPaths, events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Users whose online ``last_event_ts`` is not their latest acknowledged event's time (epoch seconds,
    truncated as the job does): the scratch world's own activity is older than any of them."""
    from common.online_features import OnlineFeatures
    from feature_repo.store import get_store

    latest: dict[str, float] = {}
    for event in events:
        ts = datetime.fromisoformat(event["timestamp"]).timestamp()
        latest[event["user_id"]] = max(latest.get(event["user_id"], 0.0), ts)
    online = OnlineFeatures(get_store(paths))
    return [u for u, ts in sorted(latest.items()) if online.user_features(u).values["last_event_ts"] != int(ts)]


def online_check(paths: DataPaths, acknowledged: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The online store against what the job was given: item counters over every streamed event
    (acknowledged + impressions serving logged), users' last event time over the acknowledged ones."""
    streamed = stream_events(paths.root, DOMAIN)
    impressions = [e for e in streamed if e.get("event_type") == "impression"]
    others = sum(e.get("event_type") != "impression" for e in streamed)
    counted = [*acknowledged, *impressions]
    wrong_items = wrong_item_counters(paths, counted)
    wrong_users = wrong_last_event(paths, acknowledged)
    return {
        "streamed_events": len(streamed),
        "streamed_impressions": len(impressions),
        "streamed_other_events": others,  # = acknowledged when no posted batch failed half-way
        "items_checked": len({e["item_id"] for e in counted}),
        "items_with_wrong_counters": len(wrong_items),
        "wrong_items_sample": wrong_items[:10],
        "users_checked": len({e["user_id"] for e in acknowledged}),
        "users_with_wrong_last_event": len(wrong_users),
        "wrong_users_sample": wrong_users[:10],
    }


def meets_target(report: Mapping[str, Any]) -> dict[str, bool]:
    alive, lake, online = report["alive"], report["lake"], report["online"]
    drained = report["drain"]["drained"]
    return {
        "all_alive": (all(alive["children_alive"].values()) and alive["restarts"] == 0
                      and alive["child_failed"] is None and alive["serving_workers_replaced"] == 0
                      and alive["serving_workers_alive"] == alive["serving_workers_at_start"] > 0),
        "no_lost_events_lake": bool(drained and lake is not None and lake["lost_events"] == 0
                                    and lake["double_counted_events"] == 0),
        "no_lost_events_online": bool(drained and online is not None and online["items_with_wrong_counters"] == 0
                                      and online["users_with_wrong_last_event"] == 0),
        "no_other_errors": report["requests"]["other"] == 0 and report["events"]["failed_batches"] == 0,
    }


# ---- the benchmark ------------------------------------------------------------------------------


def run(options: Options, world_data: Path, artifacts_root: Path, work: Path) -> dict[str, Any]:
    """Copy the world, start the platform as ``recsys run`` does, load it, drain, check; the report."""
    from cli.run import _register_features, platform_children, supervising
    from common.lake import read_catalog
    from loop.service import free_port

    work.mkdir(parents=True, exist_ok=True)
    paths = copy_world(world_data, work / "data")
    _register_features(paths, "sqlite")  # as recsys run does before starting the children
    rng = np.random.default_rng(options.seed)
    users, bodies = world_requests(paths.root, DOMAIN, options.unknown_share, rng)
    items = read_catalog(paths, DOMAIN)["item_id"].astype(str).tolist()
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_READ_API_KEY"}  # the clients send no read key
    env.update({"RECSYS_ARTIFACTS_DIR": str(artifacts_root), "RECSYS_API_KEY": API_KEY,
                "RECSYS_ONLINE_STORE": "sqlite", "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    specs = platform_children(paths, port, env)
    supervisor = Supervisor(specs, start=start_logged(work / "logs"))
    report: dict[str, Any] = {
        "benchmark": "platform_load", "options": asdict(options), "cpu_count": os.cpu_count(),
        "children": {s.name: " ".join(["python", *s.argv[1:]]) for s in specs}, "data_root": str(paths.root),
        "logs": str(work / "logs"),
    }
    started = time.monotonic()
    poster: EventPoster | None = None
    supervisor.start()
    try:
        with supervising(supervisor) as failures, ExitStack() as stack:
            report["readyz"] = wait_ready(base, supervisor, failures, READY_TIMEOUT_S)
            report["ready_seconds"] = round(time.monotonic() - started, 1)
            print(f"platform ready in {report['ready_seconds']} s on {base}", flush=True)
            workers_at_start = worker_pids(supervisor.processes()[SERVING].pid)
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")))
            url = f"{base}{ROUTE}"
            if options.warmup_seconds > 0:
                warm = pool.submit(closed_loop_outcomes, url, bodies, options.warmup_connections,
                                   options.warmup_seconds, options.timeout_s).result()
                report["warmup"] = {"answers": len(warm), "ok": sum(o.status == "200" for o in warm)}
            poster = EventPoster(base, users, items, options.event_batch, options.event_interval_s)
            print(f"load: {options.connections} closed-loop connections for {options.seconds:g} s, events alongside",
                  flush=True)
            with TreeMonitor(lambda: _live_pids(supervisor)) as memory:
                with poster:
                    outcomes = pool.submit(closed_loop_outcomes, url, bodies, options.connections, options.seconds,
                                           options.timeout_s).result()
                report["requests"] = summarize_requests(outcomes, options.seconds)
                report["events"] = asdict(poster.tally)
                wait_quiet(paths)
                drain_started = time.monotonic()
                drained, left = wait_drained(paths, options.drain_timeout_s, give_up=lambda: bool(failures))
            report["drain"] = {"drained": drained, "backlog_bytes": left,
                               "seconds": round(time.monotonic() - drain_started, 1)}
            report["memory"] = memory.figures()
            report["alive"] = alive_state(supervisor, failures, workers_at_start)
    except (RuntimeError, TimeoutError) as error:  # never ready, or a child failed for good before
        report["error"] = str(error)
        report.setdefault("alive", alive_state(supervisor, failures, set()))
        report.setdefault("requests", summarize_requests([], options.seconds))
        report.setdefault("events", asdict(EventTally()))
        report.setdefault("drain", {"drained": False, "backlog_bytes": incoming_backlog(paths), "seconds": 0.0})
        report.setdefault("memory", {})
    finally:
        supervisor.stop()
    report["backlog_after_stop_bytes"] = incoming_backlog(paths)
    acknowledged = poster.acknowledged_events if poster is not None else []
    report["events"]["acknowledged_ids"] = len(acknowledged)
    if report["drain"]["drained"]:
        report["lake"] = lake_check(paths, (e["event_id"] for e in acknowledged))
        report["online"] = online_check(paths, acknowledged)
    else:
        report["lake"] = report["online"] = None
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["meets_target"] = meets_target(report)
    return report


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    r, ev, alive = report["requests"], report["events"], report["alive"]
    lat = r["admitted_latency_ms"]
    mem = report.get("memory") or {}
    lake, online = report.get("lake") or {}, report.get("online") or {}

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    return [
        f"children: {', '.join(f'{n} alive={a}' for n, a in alive['children_alive'].items())}; restarts "
        f"{alive['restarts']}; child failed: {alive['child_failed'] or 'no'}; serving workers "
        f"{alive['serving_workers_alive']}/{alive['serving_workers_at_start']} alive, "
        f"{alive['serving_workers_replaced']} replaced",
        f"requests ({report['options']['connections']} connections, {r['seconds']:g} s): {r['answers']} answers "
        f"({r['answers_rps']}/s): 200 {r['ok']} ({r['ok_rps']}/s), 503 {r['shed']} ({pct(r['shed_share'])}), "
        f"other {r['other']} {r['other_kinds'] or ''}".rstrip(),
        f"admitted latency: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; degraded "
        f"{pct(r['degraded_share'])} of admitted; 503 p99 {r['shed_latency_ms']['p99']} ms",
        f"RSS peak of the process tree: {mem.get('peak_rss_tree_mb')} MB over {mem.get('peak_processes')} "
        f"processes (largest: {mem.get('peak_rss_process_name')} {mem.get('peak_rss_process_mb')} MB)",
        f"events: posted {ev['posted']}, acknowledged {ev['acknowledged']}, batches refused (503, retried) "
        f"{ev['refused_batches']}, batches failed {ev['failed_batches']}",
        f"drain: {'done' if report['drain']['drained'] else 'NOT done'} in {report['drain']['seconds']} s "
        f"(backlog {report['drain']['backlog_bytes']} bytes)",
        f"lake: {lake.get('lost_events', '-')} of {lake.get('acknowledged_events', '-')} acknowledged events "
        f"missing, {lake.get('double_counted_events', '-')} double",
        f"online store: {online.get('items_with_wrong_counters', '-')} of {online.get('items_checked', '-')} items "
        f"with wrong counters ({online.get('streamed_impressions', '-')} impressions streamed), "
        f"{online.get('users_with_wrong_last_event', '-')} of {online.get('users_checked', '-')} users with a wrong "
        "last_event_ts",
        f"meets_target: {json.dumps(report['meets_target'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.platform_load", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="closed-loop recommendation clients")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="unreported warm-up (8 connections)")
    parser.add_argument("--event-batch", type=int, default=20, help="events per posted batch")
    parser.add_argument("--event-interval", type=float, default=0.5, help="seconds between event batches")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="longest wait for the streaming job "
                        "to cover every incoming file after the load")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "recsys-serving-load",
                        help="scratch directory (the serving benchmarks' world is built/reused under it; each run "
                        "works on a copy, removed afterwards unless --keep)")
    parser.add_argument("--world-items", type=int, default=5_000, help="catalog size of the scratch world")
    parser.add_argument("--world-users", type=int, default=4_000, help="users of the scratch world")
    parser.add_argument("--keep", action="store_true", help="keep the run's data root and child logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUT_FILE, help="JSON report")
    args = parser.parse_args(argv)

    from benchmarks.serving_world import WorldSpec, ensure_world

    print("preparing the scratch world (built once, then reused) ...", flush=True)
    world = ensure_world(args.work_dir / "world", WorldSpec(items=args.world_items, users=args.world_users))
    options = Options(seconds=args.seconds, connections=args.connections, warmup_seconds=args.warmup_seconds,
                      event_batch=args.event_batch, event_interval_s=args.event_interval,
                      drain_timeout_s=args.drain_timeout, seed=args.seed)
    work = args.work_dir / f"platform-{os.getpid()}"
    try:
        report = run(options, world.data_root, world.artifacts_root, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for line in summary_lines(report):
        print(line)
    write(args.output, report)
    return 0 if all(report["meets_target"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
