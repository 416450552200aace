"""The online stores' contention and stall settings: SQLite in WAL with a busy timeout, Redis with
socket timeouts and no client retries (a stalled server fails a read in bounded time)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from common.online_features import OnlineFeatures
from common.paths import DataPaths
from feature_repo.config import redis_connection_string
from feature_repo.redis_server import local_redis, server_pid
from feature_repo.sqlite_store import BUSY_TIMEOUT_SECONDS
from feature_repo.store import apply, get_store


def test_redis_connection_string_adds_timeouts_unless_given():
    assert redis_connection_string("redis://10.0.0.1:6380/") == (
        "10.0.0.1:6380,socket_connect_timeout=0.5,socket_timeout=0.5,retry=null")
    assert redis_connection_string("h:1,socket_timeout=2,password=x") == (
        "h:1,socket_timeout=2,password=x,socket_connect_timeout=0.5,retry=null")


def test_the_sqlite_store_runs_in_wal_with_a_busy_timeout(tmp_path):
    paths = DataPaths(tmp_path / "data")
    store = get_store(paths)
    apply(store, paths)
    OnlineFeatures(store).user_features("r_u1")
    conn = store._get_provider().online_store._get_conn(store.config)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_SECONDS * 1000)


def test_a_read_of_a_stopped_redis_fails_within_the_socket_timeout(tmp_path):
    paths = DataPaths(tmp_path / "data")
    with local_redis() as url:
        pid = server_pid(url)
        store = get_store(paths, "redis", url)
        apply(store, paths)
        reader = OnlineFeatures(store)
        reader.user_features("r_u1")  # connected
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(Exception, match="[Tt]imeout"):
                reader.user_features("r_u1")
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        print(f"a read of the stopped server failed after {took:.2f} s")
        assert took < 1.5  # one 0.5 s socket timeout, no retries with backoff
