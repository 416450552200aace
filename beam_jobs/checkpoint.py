"""The checkpoint store of the local streaming job (one SQLite file, WAL mode).

It holds, committed together in ONE transaction per micro-batch:

- ``offsets``: per incoming file, the byte position up to which lines are done, with the file's
  identity: a digest of its first line (``head``; content-addressed, so a file replaced under the
  same name -- even on a reused inode -- is told apart) and its inode (kept for older checkpoints);
- ``seen``: the event ids already processed (dedupe across batches and restarts; pruned after a
  retention period -- older duplicates are left to the Spark compaction's dedupe);
- ``user_state`` / ``item_state``: the feature state per entity (JSON), items with the event time
  at which their 1-day window next changes (``expires_at``);
- ``watermarks``: per domain, the largest event time seen (the "now" of the item windows).

A batch is planned first (``begin``: its exact byte ranges are written ahead, like Spark's offset
log); the pipeline then stages its state, seen ids and freshness samples in ``staged_*`` tables and
makes its idempotent external writes; ``commit`` moves the staged rows into place and advances the
offsets. After a crash the pending batch's staged rows are discarded and the same ranges re-run.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from common.features import ITEM_STATS, USER_ACTIVITY

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, plan BLOB NOT NULL, planned_at REAL NOT NULL,
                                    committed_at REAL);
CREATE TABLE IF NOT EXISTS offsets (source TEXT PRIMARY KEY, inode INTEGER NOT NULL, position INTEGER NOT NULL,
                                    head INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_age ON seen (seen_at);
CREATE TABLE IF NOT EXISTS user_state (user_id TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_state (item_id TEXT PRIMARY KEY, domain TEXT NOT NULL, expires_at REAL,
                                       state BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_expiry ON item_state (domain, expires_at);
CREATE TABLE IF NOT EXISTS watermarks (domain TEXT PRIMARY KEY, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS staged_state (batch INTEGER NOT NULL, view TEXT NOT NULL, entity_id TEXT NOT NULL,
    domain TEXT NOT NULL, expires_at REAL, state BLOB NOT NULL, PRIMARY KEY (batch, view, entity_id));
CREATE TABLE IF NOT EXISTS staged_seen (batch INTEGER NOT NULL, event_id TEXT NOT NULL,
                                        PRIMARY KEY (batch, event_id));
CREATE TABLE IF NOT EXISTS staged_watermarks (batch INTEGER NOT NULL, domain TEXT NOT NULL, ts REAL NOT NULL,
                                              PRIMARY KEY (batch, domain));
CREATE TABLE IF NOT EXISTS staged_freshness (batch INTEGER NOT NULL, view TEXT NOT NULL, seconds REAL NOT NULL);
"""
_STAGED = ("staged_state", "staged_seen", "staged_watermarks", "staged_freshness")
KEPT_BATCHES = 1_000  # committed batch records kept for inspection


@dataclass(frozen=True)
class ByteRange:
    """Complete lines ``[start, end)`` of one incoming file (``source`` relative to ``incoming/``)."""

    source: str
    inode: int
    start: int
    end: int
    seen_at: float  # when the tailer first saw these bytes (arrival time of lines without ingested_at)
    head: int = 0  # digest of the file's first line when planned (0: unknown, a plan of an older version)


class Offset(NamedTuple):
    """How far one incoming file is done, and which file it was (``head``: see :func:`beam_jobs.tail.head_digest`)."""

    inode: int
    position: int
    head: int = 0


@dataclass(frozen=True)
class Batch:
    id: int
    ranges: tuple[ByteRange, ...]

    @property
    def name(self) -> str:
        """Name of the batch's lake files and dead-letter file."""
        return f"batch-{self.id:010d}"


class CheckpointStore:
    """One connection to the checkpoint database (open one per process/DoFn instance)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes (kill -9)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(offsets)")}
        if "head" not in columns:  # a checkpoint written before files were content-addressed
            self._db.execute("ALTER TABLE offsets ADD COLUMN head INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ batches
    def pending(self) -> Batch | None:
        """The planned but uncommitted batch, if the last run died in the middle of one."""
        row = self._db.execute("SELECT id, plan FROM batches WHERE committed_at IS NULL ORDER BY id").fetchone()
        if row is None:
            return None
        return Batch(row[0], tuple(ByteRange(**r) for r in orjson.loads(row[1])))

    def begin(self, ranges: Iterable[ByteRange]) -> Batch:
        """Write the batch's exact ranges ahead of processing them."""
        ranges = tuple(ranges)
        plan = orjson.dumps([asdict(r) for r in ranges])
        cursor = self._db.execute("INSERT INTO batches (plan, planned_at) VALUES (?, ?)", (plan, time.time()))
        return Batch(int(cursor.lastrowid), ranges)

    def discard_staged(self, batch: int) -> None:
        with self._transaction():
            for table in _STAGED:
                self._db.execute(f"DELETE FROM {table} WHERE batch = ?", (batch,))

    def commit(self, batch: Batch) -> None:
        """Atomically: staged state, seen ids and watermarks into place, offsets advanced, batch done."""
        b = batch.id
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO user_state SELECT entity_id, state FROM staged_state "
                "WHERE batch = ? AND view = ?", (b, USER_ACTIVITY.name),
            )
            db.execute(
                "INSERT OR REPLACE INTO item_state SELECT entity_id, domain, expires_at, state FROM staged_state "
                "WHERE batch = ? AND view = ?", (b, ITEM_STATS.name),
            )
            db.execute("INSERT OR IGNORE INTO seen SELECT event_id, ? FROM staged_seen WHERE batch = ?", (time.time(), b))
            db.execute(
                "INSERT INTO watermarks SELECT domain, ts FROM staged_watermarks WHERE batch = ? AND true "
                "ON CONFLICT (domain) DO UPDATE SET ts = max(ts, excluded.ts)", (b,),
            )
            db.executemany(
                "INSERT OR REPLACE INTO offsets (source, inode, position, head) VALUES (?, ?, ?, ?)",
                [(r.source, r.inode, r.end, r.head) for r in batch.ranges],
            )
            for table in _STAGED:
                db.execute(f"DELETE FROM {table} WHERE batch = ?", (b,))
            db.execute("UPDATE batches SET committed_at = ? WHERE id = ?", (time.time(), b))
            db.execute("DELETE FROM batches WHERE id <= ? AND committed_at IS NOT NULL", (b - KEPT_BATCHES,))

    def committed_batches(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM batches WHERE committed_at IS NOT NULL").fetchone()[0])

    # ------------------------------------------------------------------ committed state (reads)
    def offsets(self) -> dict[str, Offset]:
        """source -> its :class:`Offset`."""
        rows = self._db.execute("SELECT source, inode, position, head FROM offsets")
        return {s: Offset(i, p, h) for s, i, p, h in rows}

    def forget_offsets(self, sources: Iterable[str]) -> None:
        """Drop the offsets of incoming files removed by the retention (a file that comes back is read anew)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM offsets WHERE source = ?", [(s,) for s in sources])

    def is_seen(self, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone() is not None

    def state(self, view: str, entity_id: str) -> bytes | None:
        table, key = ("user_state", "user_id") if view == USER_ACTIVITY.name else ("item_state", "item_id")
        row = self._db.execute(f"SELECT state FROM {table} WHERE {key} = ?", (entity_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def watermark(self, domain: str) -> float | None:
        row = self._db.execute("SELECT ts FROM watermarks WHERE domain = ?", (domain,)).fetchone()
        return None if row is None else float(row[0])

    def expired_items(self, domain: str, as_of: float) -> list[str]:
        """Items of ``domain`` whose window changes by ``as_of`` without new events."""
        rows = self._db.execute(
            "SELECT item_id FROM item_state WHERE domain = ? AND expires_at <= ?", (domain, as_of)
        )
        return [r[0] for r in rows]

    def prune_seen(self, older_than: float) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM seen WHERE seen_at < ?", (older_than,)).rowcount

    # ------------------------------------------------------------------ staging (writes of a running batch)
    def stage_states(self, batch: int, rows: Iterable[tuple[str, str, str, float | None, bytes]]) -> None:
        """``(view, entity_id, domain, expires_at, state)`` rows."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO staged_state VALUES (?, ?, ?, ?, ?, ?)", [(batch, *r) for r in rows]
            )

    def stage_seen(self, batch: int, event_ids: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO staged_seen VALUES (?, ?)", [(batch, e) for e in event_ids])

    def stage_watermarks(self, batch: int, marks: Iterable[tuple[str, float]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO staged_watermarks VALUES (?, ?, ?)", [(batch, d, t) for d, t in marks]
            )

    def stage_freshness(self, batch: int, samples: Iterable[tuple[str, float]]) -> None:
        with self._transaction():
            self._db.executemany("INSERT INTO staged_freshness VALUES (?, ?, ?)", [(batch, v, s) for v, s in samples])

    def staged_freshness(self, batch: int) -> list[tuple[str, float]]:
        return [(v, s) for v, s in self._db.execute("SELECT view, seconds FROM staged_freshness WHERE batch = ?", (batch,))]
