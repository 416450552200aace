"""The own-data benchmark's steps, run as a user runs them: a subprocess (or an inline body) with its wall
time, exit code, log tail and the peak RSS of its whole process tree (psutil, polled)."""

from __future__ import annotations

import resource
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.paths import REPO_ROOT

MB = 1024 * 1024
POLL_S = 0.5


LOG_PREFIX = "own_data"  # the benchmark whose steps these are (benchmarks.scale sets its own)


def say(message: str) -> None:
    print(f"[{LOG_PREFIX}] {message}", flush=True)


# ---- subprocess steps with wall time and peak RSS of the process tree ----------------------------


class TreeMonitor:
    """Polls a process and all its descendants (psutil) until stopped: the peak of their summed RSS and
    the largest single process seen. ``pid`` may instead be a callable giving the current root pids
    (several trees summed, e.g. supervised children that may be restarted under a new pid)."""

    def __init__(self, pid: int | Callable[[], Iterable[int]], interval_s: float = POLL_S,
                 timeline: bool = False) -> None:
        self.pid, self.interval_s = pid, interval_s
        # with ``timeline``: one (epoch seconds, tree RSS, largest process RSS, tree CPU seconds) per poll;
        # CPU counts the live processes' own and reaped children's time
        self.timeline: list[tuple[float, int, int, float]] | None = [] if timeline else None
        self.peak_tree = 0
        self.peak_single, self.peak_single_name = 0, ""
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self, roots: Sequence[Any]) -> None:
        import psutil

        total, processes, seen, largest, cpu = 0, 0, set(), 0, 0.0
        for root in roots:
            try:
                tree = [root, *root.children(recursive=True)]
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            for proc in tree:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                try:
                    rss = proc.memory_info().rss
                    name = proc.name()
                    if self.timeline is not None:
                        times = proc.cpu_times()
                        cpu += times.user + times.system + times.children_user + times.children_system
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                largest = max(largest, rss)
                processes += 1
                if rss > self.peak_single:
                    self.peak_single, self.peak_single_name = rss, name
        self.peak_tree = max(self.peak_tree, total)
        if self.timeline is not None:
            self.timeline.append((time.time(), total, largest, cpu))
        self.peak_processes = max(self.peak_processes, processes)

    def _run(self) -> None:
        import psutil

        known: dict[int, Any] = {}  # pid -> psutil.Process, kept across polls
        while not self._stop.is_set():
            roots = []
            for pid in [self.pid] if isinstance(self.pid, int) else self.pid():
                try:
                    roots.append(known[pid] if pid in known else known.setdefault(pid, psutil.Process(pid)))
                except psutil.NoSuchProcess:
                    continue
            self._sample(roots)
            self._stop.wait(self.interval_s)

    def figures(self) -> dict[str, Any]:
        return {"peak_rss_tree_mb": round(self.peak_tree / MB, 1), "peak_rss_process_mb": round(self.peak_single / MB, 1),
                "peak_rss_process_name": self.peak_single_name, "peak_processes": self.peak_processes}


def children_maxrss_mb() -> float:
    """``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest single descendant reaped so far (KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


@dataclass
class Step:
    name: str
    command: str
    ok: bool = False
    seconds: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    log: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_command(name: str, argv: Sequence[str], shown: str, env: Mapping[str, str], log_dir: Path,
                monitor: TreeMonitor | None = None) -> Step:
    """Run one walkthrough command as a subprocess (its output to ``log_dir/<name>.log``), timed and monitored
    (by ``monitor`` when given: a :class:`TreeMonitor` of pid 0, pointed at the command's process here)."""
    log = log_dir / f"{name}.log"
    step = Step(name, shown, log=str(log))
    say(f"{name}: {shown}  (log: {log})")
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
        if monitor is None:
            monitor = TreeMonitor(process.pid)
        monitor.pid = process.pid
        with monitor:
            code = process.wait()
    step.seconds = round(time.perf_counter() - started, 1)
    step.exit_code, step.ok = code, code == 0
    step.resources = {**monitor.figures(), "rusage_children_maxrss_mb_so_far": children_maxrss_mb()}
    if not step.ok:
        step.reason = f"{exit_text(code)}; last lines of {log.name}:\n{tail(log)}"
    say(f"{name}: {'ok' if step.ok else 'FAILED'} in {step.seconds} s, peak RSS {step.resources['peak_rss_tree_mb']} MB"
        f" (tree), {step.resources['peak_rss_process_mb']} MB ({step.resources['peak_rss_process_name']})")
    return step


def exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name} (a signal from outside the command: the OOM killer or another process)"
    return f"exit code {code}"


def run_inline(name: str, shown: str, body: Callable[[Step], None]) -> Step:
    """An in-process stage: timed; an exception fails the stage with its reason (never silently)."""
    step = Step(name, shown)
    say(f"{name}: {shown}")
    started = time.perf_counter()
    try:
        body(step)
        step.ok = True
    except Exception as err:  # a benchmark records every failure and goes on with what does not need it
        step.reason = f"{type(err).__name__}: {err}"
        step.details["traceback"] = traceback.format_exc(limit=8)
    step.seconds = round(time.perf_counter() - started, 1)
    say(f"{name}: {'ok' if step.ok else 'FAILED: ' + str(step.reason)} in {step.seconds} s")
    return step


def not_run(name: str, shown: str, missing: str) -> Step:
    step = Step(name, shown, reason=f"not run: {missing}")
    say(f"{name}: NOT RUN ({missing})")
    return step


# ---- the split ---------------------------------------------------------------------------------
