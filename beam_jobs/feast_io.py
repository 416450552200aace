"""The Feast edge of the job: open the online store once per process, push rows in batches.

``PushRows`` keeps the newest update per entity in each bundle and writes them through the push
sources (``common.online_features``) ``max_rows`` at a time. When a push returns the rows are
readable online, so each pushed row yields a ``FreshnessSample``: now minus the earliest arrival of
the events it newly reflects. Samples also feed the Beam distribution ``freshness_ms.<view>``.

A push that meets a busy store -- SQLite's "database is locked" (another writer kept the lock past the
busy timeout) or a Redis connection error or timeout -- is retried with backoff (:func:`push_retrying`,
counted in ``push_retries``): pushes are idempotent (the same rows again). One still failing after
``PUSH_ATTEMPTS`` raises: the bundle fails and the job's restart replays it from the checkpoint, so a
push is never dropped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.shared import Shared
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from beam_jobs.records import METRICS_NAMESPACE, FeatureUpdate, FreshnessSample
from common.features import ITEM_STATS, USER_ACTIVITY, USER_ID
from common.online_features import OnlineFeatures
from common.paths import DataPaths

_STORES = Shared()
PUSH_ATTEMPTS = 6  # with the backoff below: ~3 s of retries on top of each attempt's own busy wait
PUSH_BACKOFF_INITIAL_S = 0.1
PUSH_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True)
class FeastTarget:
    """Which online store to push to: the Feast store over ``data_root`` (``feature_repo.store``)."""

    data_root: str
    online: str = "sqlite"
    redis_url: str | None = None

    def open(self) -> OnlineFeatures:
        """The process-wide ``OnlineFeatures`` of this target (opened on first use)."""
        from feature_repo.store import get_store

        def make() -> OnlineFeatures:
            return OnlineFeatures(get_store(DataPaths(Path(self.data_root)), self.online, self.redis_url))

        return _STORES.acquire(make, tag=self)


def read_activity_rows(online: OnlineFeatures, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``user_activity`` rows online for ``user_ids`` (one read); users without a row are absent."""
    if not user_ids:
        return {}
    refs = [USER_ACTIVITY.ref(name) for name in USER_ACTIVITY.names]
    columns = online.store.get_online_features(
        features=refs, entity_rows=[{USER_ID: u} for u in user_ids]
    ).to_dict()
    rows = {}
    for k, user_id in enumerate(columns[USER_ID]):
        row = {name: columns[name][k] for name in USER_ACTIVITY.names}
        if row["last_event_ts"] is not None:
            rows[user_id] = row
    return rows


def store_busy(err: BaseException) -> bool:
    """A failure a later attempt of the same push can get past: the store was busy or unreachable."""
    if isinstance(err, sqlite3.OperationalError):
        return "locked" in str(err) or "busy" in str(err)
    return isinstance(err, (RedisConnectionError, RedisTimeoutError))


def _count_retry(state: RetryCallState) -> None:
    Metrics.counter(METRICS_NAMESPACE, "push_retries").inc()


def push_retrying(
    push: Callable[[Sequence[Mapping[str, Any]]], int], rows: Sequence[Mapping[str, Any]],
    attempts: int = PUSH_ATTEMPTS, initial_backoff: float = PUSH_BACKOFF_INITIAL_S,
) -> int:
    """``push(rows)``, again after a jittered exponential backoff while the store is busy
    (:func:`store_busy`); after ``attempts`` the last error is raised. Other errors raise at once."""
    for attempt in Retrying(
        retry=retry_if_exception(store_busy), stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=initial_backoff, max=PUSH_BACKOFF_MAX_S, jitter=initial_backoff),
        before_sleep=_count_retry, reraise=True,
    ):
        with attempt:
            return push(rows)
    raise AssertionError("unreachable: Retrying either returns or raises")


def merge_updates(old: FeatureUpdate | None, new: FeatureUpdate) -> FeatureUpdate:
    """The newer row, reflecting the events of both (earliest arrival kept for freshness)."""
    if old is None or old.arrived_at is None:
        return new
    arrived = old.arrived_at if new.arrived_at is None else min(old.arrived_at, new.arrived_at)
    return FeatureUpdate(new.view, new.entity_id, new.row, new.state, new.domain, arrived, new.expires_at)


class PushRows(beam.DoFn):
    """``FeatureUpdate`` -> pushed online; outputs one ``FreshnessSample`` per pushed row with events."""

    def __init__(self, target: FeastTarget, max_rows: int = 1_000) -> None:
        self.target = target
        self.max_rows = max_rows
        self._pending: dict[tuple[str, str], FeatureUpdate] = {}

    def setup(self) -> None:
        self.online = self.target.open()

    def start_bundle(self) -> None:
        self._pending = {}

    def process(self, update: FeatureUpdate) -> Iterator[FreshnessSample]:
        key = (update.view, update.entity_id)
        self._pending[key] = merge_updates(self._pending.get(key), update)
        if len(self._pending) >= self.max_rows:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for sample in self._flush():
            yield WindowedValue(sample, Timestamp.now(), [GlobalWindow()])

    def _flush(self) -> Iterator[FreshnessSample]:
        pending, self._pending = list(self._pending.values()), {}
        for view, push in ((USER_ACTIVITY.name, self.online.push_user_activity),
                           (ITEM_STATS.name, self.online.push_item_stats)):
            updates = [u for u in pending if u.view == view]
            if not updates:
                continue
            push_retrying(push, [u.row for u in updates])
            done = time.time()
            Metrics.counter(METRICS_NAMESPACE, f"pushed.{view}").inc(len(updates))
            Metrics.counter(METRICS_NAMESPACE, "push_calls").inc()
            latency = Metrics.distribution(METRICS_NAMESPACE, f"freshness_ms.{view}")
            for update in updates:
                if update.arrived_at is not None:
                    seconds = max(done - update.arrived_at, 0.0)
                    latency.update(int(seconds * 1000))
                    yield FreshnessSample(view, seconds)
