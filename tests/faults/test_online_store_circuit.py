"""The online store's circuit breaker and the item read-ahead, state by state on a hand-driven clock.

The end-to-end fault (a stalled redis-server under the live app) is ``test_online_store_stall``;
these pin the rules it relies on, with a reader that fails on demand (the injected fault).
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
import redis.exceptions

from serving.features import ReadAhead
from serving.online import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    CircuitOpen,
    GuardedFeatureReader,
    StoreUnavailable,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise TimeoutError("Timeout reading from 127.0.0.1:6379")


def _ok() -> str:
    return "row"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def states() -> list[str]:
    return []


@pytest.fixture
def breaker(clock: Clock, states: list[str]) -> CircuitBreaker:
    return CircuitBreaker(failures=3, cool_down_seconds=5.0, on_change=states.append, clock=clock)


def test_consecutive_failures_open_it_and_reads_then_fail_fast(breaker: CircuitBreaker, states: list[str]) -> None:
    for _ in range(2):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    assert breaker.call(_ok) == "row"  # a success in between: not consecutive
    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    assert breaker.state == OPEN and states == [CLOSED, OPEN]
    called: list[int] = []
    with pytest.raises(CircuitOpen, match="TimeoutError"):
        breaker.call(lambda: called.append(1))
    assert called == []  # the store is not touched while open


@pytest.mark.parametrize("error", [
    StoreUnavailable("online store unavailable"), ConnectionRefusedError(111, "Connection refused"),
    sqlite3.OperationalError("database is locked"), redis.exceptions.ConnectionError("Connection reset"),
    redis.exceptions.TimeoutError("Timeout reading from socket"), OSError(5, "Input/output error"),
], ids=type)
def test_every_kind_of_store_failure_counts(breaker: CircuitBreaker, error: Exception) -> None:
    def failing() -> None:
        raise error

    for _ in range(3):
        with pytest.raises(type(error)):
            breaker.call(failing)
    assert breaker.state == OPEN


def test_a_programming_error_propagates_without_tripping_it(breaker: CircuitBreaker, states: list[str]) -> None:
    def broken() -> None:
        raise KeyError("user_id")  # a bug of the reader, not a store that fails: the pipeline degrades on it

    for _ in range(2):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    for _ in range(5):
        with pytest.raises(KeyError):
            breaker.call(broken)
    assert breaker.state == CLOSED and states == [CLOSED]
    with pytest.raises(TimeoutError):
        breaker.call(_fail)  # the third consecutive store failure: bugs in between neither count nor reset
    assert breaker.state == OPEN


def test_after_the_cool_down_one_probe_decides(breaker: CircuitBreaker, clock: Clock, states: list[str]) -> None:
    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    clock.now = 5.0
    with pytest.raises(TimeoutError):
        breaker.call(_fail)  # the probe fails: open for another cool-down
    assert breaker.state == OPEN
    clock.now = 9.0
    with pytest.raises(CircuitOpen):
        breaker.call(_ok)
    clock.now = 10.0

    probing, release = threading.Event(), threading.Event()

    def slow_probe() -> str:
        probing.set()
        release.wait(5)
        return "row"

    probe = threading.Thread(target=breaker.call, args=(slow_probe,))
    probe.start()
    probing.wait(5)
    assert breaker.state == HALF_OPEN
    with pytest.raises(CircuitOpen):  # one probe at a time; the others fail fast meanwhile
        breaker.call(_ok)
    release.set()
    probe.join(5)
    assert breaker.state == CLOSED and states == [CLOSED, OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_a_probe_that_never_returns_does_not_keep_it_half_open(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    clock.now = 5.0
    assert breaker._admit() is True  # a probe admitted whose call hangs
    clock.now = 10.0
    assert breaker.call(_ok) == "row"  # a cool-down later, another probe is let through
    assert breaker.state == CLOSED


def test_late_results_of_calls_admitted_before_it_opened_change_nothing(breaker: CircuitBreaker) -> None:
    late = [breaker._admit() for _ in range(2)]  # admitted while closed, still running
    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker.call(_fail)
    breaker._succeeded(late[0])
    breaker._failed(late[1], TimeoutError("late"))
    assert breaker.state == OPEN


def test_the_guarded_reader_reports_degraded_while_not_closed(breaker: CircuitBreaker) -> None:
    class Down:
        def user_features(self, user_id: str):
            _fail()

        def item_features(self, item_ids):
            _fail()

    reader = GuardedFeatureReader(Down(), breaker)  # type: ignore[arg-type]
    for call in (lambda: reader.user_features("r_u1"), lambda: reader.item_features(["r_i1"]),
                 lambda: reader.user_features("r_u2")):
        assert not reader.degraded
        with pytest.raises(TimeoutError):
            call()
    assert reader.degraded
    with pytest.raises(CircuitOpen):
        reader.item_features(["r_i1"])


def test_read_ahead_never_makes_its_caller_wait_and_never_doubles() -> None:
    read_ahead = ReadAhead("test-read-ahead")
    stalled, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def stalled_read() -> None:
        runs.append(1)
        stalled.set()
        release.wait(5)

    assert read_ahead.submit(stalled_read)
    stalled.wait(5)
    assert not read_ahead.submit(stalled_read)  # still running: skipped, not queued, not waited for
    release.set()
    read_ahead._thread.join(5)  # type: ignore[union-attr]
    assert read_ahead.submit(lambda: runs.append(2))
    read_ahead._thread.join(5)  # type: ignore[union-attr]
    assert runs == [1, 2]
