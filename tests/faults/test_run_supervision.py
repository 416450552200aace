"""Fault: a child of ``recsys run`` dies. It is restarted (with backoff, bounded); one that keeps
crashing stops the others and ``recsys run`` exits 1 naming it -- never 0 after a crash.

The children are real short-lived processes; only the clock is a test clock where a test steps it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from cli import run as recsys_run
from common.supervisor import ChildFailed, ChildSpec, Supervisor

SLEEPER = ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])


def crasher(code: int = 3) -> ChildSpec:
    return ChildSpec("crasher", [sys.executable, "-c", f"import sys; sys.exit({code})"])


def crash_once(marker: Path) -> ChildSpec:
    """Exits 1 the first time (leaving ``marker``), then runs until stopped."""
    script = ("import pathlib, sys, time\nmarker = pathlib.Path(sys.argv[1])\n"
              "if not marker.exists():\n    marker.touch()\n    sys.exit(1)\ntime.sleep(120)\n")
    return ChildSpec("flaky", [sys.executable, "-c", script, str(marker)])


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _wait_exit(supervisor: Supervisor, name: str) -> None:
    process = supervisor.processes()[name]
    assert process is not None
    process.wait(timeout=30)


def test_a_child_that_keeps_crashing_stops_the_rest_and_run_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = Supervisor([crasher(3), SLEEPER], max_restarts=2, window_seconds=60.0, backoff=0.01)
    supervisor.start()
    sleeper = supervisor.processes()["sleeper"]
    try:
        with pytest.raises(typer.Exit) as exited:
            recsys_run._keep_serving(supervisor)
    finally:
        supervisor.stop()
    assert exited.value.exit_code == 1
    assert "crasher keeps crashing: exit code 3 after 2 restart(s)" in capsys.readouterr().err
    assert supervisor.restarts == 2
    assert sleeper is not None and sleeper.poll() == -signal.SIGTERM  # stopped with the failure


def test_a_crashed_child_is_restarted_after_its_backoff_and_keeps_running(tmp_path: Path) -> None:
    clock = StepClock()
    supervisor = Supervisor([crash_once(tmp_path / "crashed"), SLEEPER], clock=clock, backoff=5.0)
    supervisor.start()
    try:
        _wait_exit(supervisor, "flaky")
        supervisor.check()
        assert supervisor.processes()["flaky"] is None  # waiting for its backoff
        clock.now = 4.9
        supervisor.check()
        assert supervisor.processes()["flaky"] is None
        clock.now = 5.0
        supervisor.check()
        restarted = supervisor.processes()["flaky"]
        assert restarted is not None and restarted.poll() is None and supervisor.restarts == 1
        supervisor.check()
        assert supervisor.processes()["flaky"] is restarted
    finally:
        supervisor.stop()
    assert restarted.poll() == -signal.SIGTERM


def test_crashes_further_apart_than_the_window_are_forgiven_and_the_backoff_doubles() -> None:
    clock = StepClock()
    supervisor = Supervisor([crasher(1)], clock=clock, max_restarts=2, window_seconds=100.0, backoff=1.0)
    supervisor.start()
    try:
        for now, backoff in ((0.0, 1.0), (10.0, 2.0), (200.0, 1.0), (201.0, 2.0)):
            clock.now = now
            _wait_exit(supervisor, "crasher")
            supervisor.check()  # the death, then (clock moved past the backoff) the restart
            clock.now = now + backoff
            supervisor.check()
            assert supervisor.processes()["crasher"] is not None, now
        clock.now = 202.0
        _wait_exit(supervisor, "crasher")
        with pytest.raises(ChildFailed) as failed:
            supervisor.check()  # a third death within 100 s
    finally:
        supervisor.stop()
    assert (failed.value.name, failed.value.returncode) == ("crasher", 1)


def test_a_dead_childs_leftover_processes_are_killed_before_its_restart(tmp_path: Path) -> None:
    """A child that dies leaving a process in its group (as a uvicorn parent leaves its workers, which
    hold the port) is restarted only once that process is gone."""
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, pathlib\n"
              "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              f"pathlib.Path({str(pid_file)!r}).write_text(str(g.pid))\n"
              "sys.exit(1)\n")
    clock = StepClock()
    supervisor = Supervisor([ChildSpec("parent", [sys.executable, "-c", script])], clock=clock, backoff=60.0)
    supervisor.start()
    try:
        _wait_exit(supervisor, "parent")
        grandchild = int(pid_file.read_text())
        supervisor.check()  # notes the death
        deadline = time.monotonic() + 10
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(grandchild)
    finally:
        supervisor.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return False


def test_an_error_of_the_supervision_itself_stops_the_children_and_is_reported() -> None:
    def cannot_start(spec: ChildSpec) -> subprocess.Popen:
        raise OSError(24, "Too many open files")

    supervisor = Supervisor([crasher(3)], backoff=0.01)
    supervisor.start()
    supervisor._start = cannot_start  # the restart fails (fault injection)
    with recsys_run.supervising(supervisor) as failures:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.05)
    assert failures and isinstance(failures[0], OSError)
