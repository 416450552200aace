"""Supervision of long-running child processes: `recsys run`'s (the streaming job, the serving API) and
the serving front's (its uvicorn workers and nginx, :mod:`serving.front`).

A child that dies is restarted after a backoff that doubles with each recent crash (``backoff``,
capped at ``max_backoff``); every death is logged as an error with the child's name and exit code.
Restarts are bounded: a child that needs more than ``max_restarts`` within ``window_seconds`` is
failing, not flaking -- the supervisor then stops the other children and raises
:class:`ChildFailed` naming it and its exit code, so ``recsys run`` exits non-zero instead of
serving half a platform or exiting 0. A child that exits 0 unasked also counts: these children only
end when told to. Restarting the streaming job is lossless (its checkpoint re-runs an uncommitted
batch); restarting serving loses only the requests in flight.

:meth:`Supervisor.check` is one decision step over Popen-like children and an injectable clock (the
tests drive it with real short-lived processes); :meth:`Supervisor.supervise` loops it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

LOG = logging.getLogger("recsys.run")
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ChildSpec:
    """A child to keep running: its name (in messages) and command line."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None


def start_in_own_group(spec: ChildSpec) -> subprocess.Popen:
    """Start a child in its own session, so stopping it stops its whole process tree."""
    return subprocess.Popen(list(spec.argv), env=None if spec.env is None else dict(spec.env), start_new_session=True)


def start_in_our_group(spec: ChildSpec) -> subprocess.Popen:
    """Start a child in the supervisor's own process group: whoever stops the supervisor's group (a
    supervisor above it, Ctrl-C in a terminal) stops the child too, even after a SIGKILL."""
    return subprocess.Popen(list(spec.argv), env=None if spec.env is None else dict(spec.env))


class ChildFailed(RuntimeError):
    """A child kept crashing past the restart bound."""

    def __init__(self, name: str, returncode: int, restarts: int, window_seconds: float) -> None:
        super().__init__(f"{name} keeps crashing: exit code {returncode} after {restarts} restart(s) within "
                         f"{window_seconds:.0f} s; stopped everything")
        self.name = name
        self.returncode = returncode


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen | None = None
    restart_at: float | None = None  # set while a restart waits for its backoff
    crashes: deque[float] = field(default_factory=deque)  # clock times of recent deaths


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        start: Callable[[ChildSpec], subprocess.Popen] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_restarts: int = 5,
        window_seconds: float = 600.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        own_groups: bool = True,
    ) -> None:
        """``own_groups``: each child runs in a process group of its own, and signals go to that group
        (its whole tree); else the children share the supervisor's group and signals go to each child."""
        self.children = [_Child(spec) for spec in specs]
        self._start = start or (start_in_own_group if own_groups else start_in_our_group)
        self._signal = _signal_group if own_groups else _signal_process
        self._clock = clock
        self.max_restarts = max_restarts
        self.window_seconds = window_seconds
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.restarts = 0  # in total, for reports

    def start(self) -> None:
        for child in self.children:
            child.process = self._start(child.spec)

    def processes(self) -> dict[str, subprocess.Popen | None]:
        return {child.spec.name: child.process for child in self.children}

    def check(self) -> None:
        """One step: note deaths, schedule and perform restarts; raises :class:`ChildFailed` (after
        stopping the other children) when a child died more than ``max_restarts`` times in the window."""
        now = self._clock()
        for child in self.children:
            if child.process is not None and (code := child.process.poll()) is not None:
                self._died(child, code, now)
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                LOG.warning("restarting %s (restart %d in the last %.0f s)", child.spec.name, len(child.crashes),
                            self.window_seconds)
                child.process, child.restart_at = self._start(child.spec), None
                self.restarts += 1

    def _died(self, child: _Child, code: int, now: float) -> None:
        # what the dead child left in its process group (e.g. uvicorn workers holding the port) would keep
        # its restart from starting: killed first
        self._signal(child.process, signal.SIGKILL)
        child.process = None
        while child.crashes and child.crashes[0] <= now - self.window_seconds:
            child.crashes.popleft()
        if len(child.crashes) >= self.max_restarts:
            LOG.error("%s exited with code %d and has used its %d restarts in %.0f s: stopping everything",
                      child.spec.name, code, self.max_restarts, self.window_seconds)
            self.stop()
            raise ChildFailed(child.spec.name, code, len(child.crashes), self.window_seconds)
        child.crashes.append(now)
        delay = min(self.max_backoff, self.backoff * 2 ** (len(child.crashes) - 1))
        child.restart_at = now + delay
        LOG.error("%s exited with code %d; restarting it in %.1f s", child.spec.name, code, delay)

    def supervise(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        """Check every ``poll_seconds`` until ``stop`` is set (then return, children still running) or
        a child fails for good (:class:`ChildFailed`, children stopped)."""
        while not stop.wait(poll_seconds):
            self.check()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM every running child's process group, SIGKILL what is still alive after ``timeout``."""
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for child in self.children:
            child.restart_at = None
        for process in running:
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                LOG.error("pid %d did not stop within %.0f s of SIGTERM: killing it", process.pid, timeout)
                self._signal(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # already gone
        pass


def _signal_process(process: subprocess.Popen, sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
