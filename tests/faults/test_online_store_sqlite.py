"""Fault: the embedded SQLite online store is read hard while the streaming job pushes into it.

Under load the streaming job died with ``sqlite3.OperationalError: database is locked [while running
'Push']``: a rollback journal lets a reader's lock hold a writer off until its busy wait (5 s) ends.
Here the real Feast SQLite store of a fresh data root is read by reader threads (one store each, as
serving's processes are) while ``PushRows`` -- the streaming job's push -- writes through its own
store; one reader keeps a read transaction open for longer than that busy wait (a slow scan: the
injected fault). No error may escape, and every pushed row must be readable afterwards.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beam_jobs.feast_io import FeastTarget, PushRows, push_retrying
from beam_jobs.records import FeatureUpdate
from common.features import USER_ACTIVITY, USER_ID
from common.online_features import OnlineFeatures
from common.paths import DataPaths
from common.polling import wait_until
from feature_repo.config import store_dir
from feature_repo.store import apply, get_store

BATCHES, BATCH_ROWS = 12, 40
SLOW_READ_SECONDS = 6.0  # longer than sqlite3's default 5 s busy wait the old store relied on
LOCKED = sqlite3.OperationalError("database is locked")


def _activity(user_id: str, n: int) -> dict:
    row: dict = {name: None for name in USER_ACTIVITY.names}
    row.update({USER_ID: user_id, "event_timestamp": datetime(2024, 6, 1, tzinfo=UTC).timestamp() + n,
                "last_event_ts": 1_700_000_000 + n})
    return row


@pytest.fixture
def data_root(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path / "data")
    apply(get_store(paths), paths)
    return paths


def test_pushes_beside_hard_readers_and_a_slow_scan_all_land(data_root: DataPaths) -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    users = [f"r_u{n:04d}" for n in range(BATCHES * BATCH_ROWS)]

    def read_hard(seed: int) -> None:
        reader = OnlineFeatures(get_store(data_root))  # a store (and connection) of its own
        while not done.is_set():
            try:
                reader.user_features(users[seed % len(users)])
                reader.item_features([f"r_i{i}" for i in range(50)])
            except BaseException as err:  # noqa: BLE001  (every escaped error is the finding)
                errors.append(err)
                return
            seed += 7

    def slow_scan(started: threading.Event) -> None:
        """A read transaction held open, as a long scan holds it (the fault)."""
        db = sqlite3.connect(store_dir(data_root, "sqlite") / "online_store.db", isolation_level=None)
        try:
            db.execute("BEGIN")
            db.execute("SELECT count(*) FROM sqlite_master").fetchall()
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                db.execute(f'SELECT count(*) FROM "{table}"').fetchall()
            started.set()
            done.wait(SLOW_READ_SECONDS)
            db.execute("COMMIT")
        finally:
            db.close()

    def write() -> None:
        pusher = PushRows(FeastTarget(str(data_root.root)), max_rows=BATCH_ROWS)
        pusher.setup()
        try:
            for b in range(BATCHES):
                pusher.start_bundle()
                for n in range(b * BATCH_ROWS, (b + 1) * BATCH_ROWS):
                    list(pusher.process(FeatureUpdate(USER_ACTIVITY.name, users[n], _activity(users[n], n), b"",
                                                      "retail", arrived_at=time.time())))
                list(pusher.finish_bundle())
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    scanning = threading.Event()
    threads = [threading.Thread(target=slow_scan, args=(scanning,))]
    threads[0].start()
    wait_until(scanning.is_set, 10.0, "the scan started", poll=0.01)
    threads += [threading.Thread(target=read_hard, args=(seed,)) for seed in range(3)]
    for thread in threads[1:]:
        thread.start()
    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=60)
    done.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not writer.is_alive()
    assert not errors, f"{len(errors)} error(s) escaped, first: {errors[0]!r}"

    online = OnlineFeatures(get_store(data_root))
    for n, user in enumerate(users):
        served = online.user_features(user)
        assert served.found[USER_ACTIVITY.name], user
        assert served.values["last_event_ts"] == 1_700_000_000 + n


def test_a_locked_push_is_retried_until_it_lands(data_root: DataPaths) -> None:
    online = OnlineFeatures(get_store(data_root))
    failures = iter([LOCKED, LOCKED])

    def push_meeting_a_lock(rows: list[dict]) -> int:
        fault = next(failures, None)
        if fault is not None:
            raise fault
        return online.push_user_activity(rows)

    assert push_retrying(push_meeting_a_lock, [_activity("r_u1", 1)], initial_backoff=0.01) == 1
    assert online.user_features("r_u1").values["last_event_ts"] == 1_700_000_001


def test_a_push_still_locked_after_the_retries_raises_instead_of_being_dropped() -> None:
    calls: list[int] = []

    def always_locked(rows: list[dict]) -> int:
        calls.append(len(rows))
        raise LOCKED

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        push_retrying(always_locked, [_activity("r_u1", 1)], attempts=3, initial_backoff=0.01)
    assert calls == [1, 1, 1]

    def broken(rows: list[dict]) -> int:
        calls.append(-1)
        raise KeyError("a bad row is not retried")

    with pytest.raises(KeyError):
        push_retrying(broken, [], attempts=3, initial_backoff=0.01)
    assert calls[-1] == -1 and calls.count(-1) == 1
