"""Feast's SQLite online store, made to take a writer beside readers: WAL journal and a busy timeout.

Feast's ``SqliteOnlineStore`` opens its connection with Python's defaults: a rollback journal, in
which a reader's shared lock stops a writer from committing, and a 5 s busy wait. With serving
reading hard (256 connections) the streaming job's push waited those 5 s and died with
``sqlite3.OperationalError: database is locked``. In WAL mode readers never block the writer nor
the writer the readers; writers still take turns, and wait up to ``busy_timeout_seconds`` for it.

Registered as the online store ``type`` by its dotted class path (``feature_repo.config``); Feast
finds the config class by the store class's name + ``Config``.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.repo_config import RepoConfig
from pydantic import Field

STORE_TYPE = "feature_repo.sqlite_store.WalSqliteOnlineStore"
BUSY_TIMEOUT_SECONDS = 30.0  # a writer waits this long for another writer (e.g. materialize) to commit


def configure_connection(conn: sqlite3.Connection, busy_timeout_seconds: float) -> None:
    """Busy timeout first (switching the journal waits for other connections too), then WAL.

    ``synchronous=NORMAL`` is WAL's usual pairing: a commit survives a process crash, and a power
    loss can only lose the last commits, which the streaming job replays from its checkpoint and
    the nightly materialization rewrites.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"the online store could not switch to WAL (journal mode {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")


class WalSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """``SqliteOnlineStoreConfig`` plus how long a writer waits for the write lock."""

    type: Literal["feature_repo.sqlite_store.WalSqliteOnlineStore"] = STORE_TYPE  # type: ignore[assignment]
    busy_timeout_seconds: float = Field(BUSY_TIMEOUT_SECONDS, gt=0)


class WalSqliteOnlineStore(SqliteOnlineStore):
    """``SqliteOnlineStore`` whose connection is in WAL mode with a busy timeout."""

    def _get_conn(self, config: RepoConfig) -> sqlite3.Connection:
        fresh = self._conn is None
        conn = super()._get_conn(config)
        if fresh:  # idempotent: two threads racing to open both configure the one kept
            configure_connection(conn, config.online_store.busy_timeout_seconds)
        return conn
