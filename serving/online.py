"""The online feature reader serving uses: opened on first use, re-opened at most every few seconds,
read behind a circuit breaker.

A store that is unreachable when the process starts (or later) does not stop the service: reads
raise :class:`StoreUnavailable`, the pipeline serves its popularity fallback, and the next attempt to
open the store comes after ``retry_seconds``.

A store that stalls (a Redis that stops answering, a SQLite file locked past its busy timeout) fails
each read only after its timeout, and every read would pay it. :class:`CircuitBreaker` counts
consecutive failures of the store (:data:`STORE_ERRORS`: unreachable, timed out, locked; a bug of
the reader raises on without counting); ``failures`` of them open the circuit for
``cool_down_seconds``, during which reads fail at once (:class:`CircuitOpen`) and requests take the
degraded paths without touching the store; then one read is let through as a probe (half-open): its
success closes the circuit, its failure opens it for another cool-down. ``/readyz`` reports the state, and so does the gauge
``recsys_online_store_circuit{state}``. (Hand-written, ~60 lines: pybreaker runs every call under
the breaker's lock, which would serialise serving's concurrent reads.)
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis.exceptions

from common.online_features import ItemFeatures, UserFeatures
from serving.protocols import FeatureReader

log = logging.getLogger(__name__)
T = TypeVar("T")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CIRCUIT_STATES = (CLOSED, OPEN, HALF_OPEN)


class StoreUnavailable(RuntimeError):
    """The online store could not be opened (recently); the caller degrades."""


class CircuitOpen(StoreUnavailable):
    """The online store failed repeatedly: reads fail at once until the cool-down ends."""


# What a store that is down, stalled or locked raises (OSError covers ConnectionError, TimeoutError;
# redis-py's own ConnectionError and TimeoutError are not OSErrors)
STORE_ERRORS = (StoreUnavailable, OSError, sqlite3.OperationalError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError)


class CircuitBreaker:
    """Closed -> ``failures`` consecutive failures -> open -> ``cool_down_seconds`` -> half-open (one
    probe call) -> closed on its success, open again on its failure.

    Only :data:`STORE_ERRORS` are failures; any other exception (a bug: ``KeyError``, ``TypeError``
    ...) propagates and changes nothing, so one bad request cannot open the circuit for all of them.
    The lock guards the state only; calls run outside it, concurrently. Calls admitted before the
    circuit opened that finish later change nothing. While a probe has not returned the circuit stays
    half-open and other calls fail fast; a cool-down after the probe started another probe is let
    through, so a call that never returns cannot keep every read out.
    """

    def __init__(
        self, failures: int = 5, cool_down_seconds: float = 5.0, on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cool_down_seconds = cool_down_seconds
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self._consecutive = 0
        self._since = -math.inf  # when the circuit opened, or the probe started
        self._error = ""
        if on_change is not None:
            on_change(CLOSED)

    def call(self, fn: Callable[[], T]) -> T:
        probe = self._admit()
        try:
            result = fn()
        except STORE_ERRORS as err:
            self._failed(probe, err)
            raise
        self._succeeded(probe)
        return result

    def _admit(self) -> bool:
        """Whether the call is the half-open probe; raises :class:`CircuitOpen` when it may not run."""
        with self._lock:
            if self.state == CLOSED:
                return False
            if self._clock() - self._since < self.cool_down_seconds:
                raise CircuitOpen(f"online store circuit {self.state} after repeated failures ({self._error})")
            self._set(HALF_OPEN)
            return True

    def _failed(self, probe: bool, err: Exception) -> None:
        with self._lock:
            self._error = f"{type(err).__name__}: {err}"
            if probe or self.state == CLOSED:
                self._consecutive += 1
                if probe or self._consecutive >= self.failures:
                    self._set(OPEN)
                    log.error("online store circuit open for %.1f s after %d consecutive failure(s), last: %s",
                              self.cool_down_seconds, self._consecutive, self._error)

    def _succeeded(self, probe: bool) -> None:
        with self._lock:
            if probe or self.state == CLOSED:
                if probe:
                    log.warning("online store circuit closed: the probe read succeeded")
                self._consecutive = 0
                self._set(CLOSED)

    def _set(self, state: str) -> None:
        self._since = self._clock()
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)


class GuardedFeatureReader:
    """A :class:`FeatureReader` whose reads go through a :class:`CircuitBreaker`."""

    def __init__(self, reader: FeatureReader, breaker: CircuitBreaker) -> None:
        self.reader = reader
        self.breaker = breaker

    @property
    def degraded(self) -> bool:
        """The circuit is not closed: reads fail fast, answers come from the degraded paths."""
        return self.breaker.state != CLOSED

    def user_features(self, user_id: str) -> UserFeatures:
        return self.breaker.call(lambda: self.reader.user_features(user_id))

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        return self.breaker.call(lambda: self.reader.item_features(item_ids))


class LazyFeatureReader:
    def __init__(
        self, open_reader: Callable[[], FeatureReader], retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_reader
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._reader: FeatureReader | None = None
        self._failed_at = -float("inf")
        self._error = ""
        self._lock = threading.Lock()

    def _get(self) -> FeatureReader:
        reader = self._reader
        if reader is not None:
            return reader
        with self._lock:
            if self._reader is None:
                if self._clock() - self._failed_at < self.retry_seconds:
                    raise StoreUnavailable(f"online store unavailable: {self._error}")
                try:
                    self._reader = self._open()
                except Exception as err:  # any failure to open means "unavailable for now"
                    self._failed_at, self._error = self._clock(), f"{type(err).__name__}: {err}"
                    raise StoreUnavailable(f"online store unavailable: {self._error}") from err
            return self._reader

    def user_features(self, user_id: str) -> UserFeatures:
        return self._get().user_features(user_id)

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        return self._get().item_features(item_ids)
