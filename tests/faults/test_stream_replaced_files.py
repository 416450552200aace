"""Fault: an incoming file replaced under the same name -- on the same inode, as file systems reuse
them -- must be read from its start (files are identified by their first line, not their inode);
and the retention removes only files read to their end."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd

from beam_jobs.checkpoint import CheckpointStore
from beam_jobs.job import FileStreamJob, StreamConfig, checkpoint_path
from common.lake import read_events, write_catalog
from common.paths import DataPaths
from feature_repo.store import apply, get_store

ITEMS = ("r_i1", "r_i2")


def _lines(prefix: str, n: int) -> bytes:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return b"".join(orjson.dumps({
        "event_id": f"{prefix}-{k}", "domain": "retail", "user_id": f"r_u{k}", "item_id": ITEMS[k % 2],
        "event_type": "view", "timestamp": at.isoformat(), "session_id": f"s-{prefix}"}) + b"\n" for k in range(n))


def _world(paths: DataPaths) -> None:
    write_catalog(pd.DataFrame([
        {"item_id": i, "domain": "retail", "title": i, "description": "", "category": "Bags>City", "price": 10.0,
         "margin": 0.2, "inventory": 5, "launched_at": datetime(2024, 1, 1, tzinfo=UTC)} for i in ITEMS
    ]), paths, "retail")
    apply(get_store(paths), paths)


def _config(paths: DataPaths) -> StreamConfig:
    return StreamConfig(paths, once=True, seed_users=False, incoming_retention_hours=1.0)


def _lake_ids(paths: DataPaths) -> set[str]:
    return set(read_events(paths, "retail", columns=["event_id"])["event_id"])


def test_a_file_replaced_in_place_on_the_same_inode_is_read_from_its_start(data_paths: DataPaths) -> None:
    paths = data_paths
    _world(paths)
    path = paths.incoming("retail") / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_lines("old", 3))
    FileStreamJob(_config(paths)).run()
    inode = path.stat().st_ino
    with path.open("r+b") as fh:  # rewritten in place: same name, same inode, longer than the old offset
        fh.truncate(0)
        fh.write(_lines("new", 8))
    assert path.stat().st_ino == inode
    summary = FileStreamJob(_config(paths)).run()

    lake = _lake_ids(paths)
    assert {f"new-{k}" for k in range(8)} <= lake and {f"old-{k}" for k in range(3)} <= lake
    assert sum(summary["dead_letters"].values()) == 0  # no line was cut in the middle


def test_the_retention_removes_only_files_read_to_their_end(data_paths: DataPaths) -> None:
    paths = data_paths
    _world(paths)
    incoming = paths.incoming("retail")
    incoming.mkdir(parents=True, exist_ok=True)
    done, growing, fresh = incoming / "a.jsonl", incoming / "b.jsonl", incoming / "c.jsonl"
    for name, path in (("a", done), ("b", growing), ("c", fresh)):
        path.write_bytes(_lines(name, 4))
    FileStreamJob(_config(paths)).run()
    with growing.open("ab") as fh:  # appended after the job read it: not done
        fh.write(_lines("b2", 2))
    two_hours_ago = time.time() - 7_200
    for path in (done, growing):
        os.utime(path, (two_hours_ago, two_hours_ago))

    job = FileStreamJob(_config(paths))
    try:
        removed = job.remove_expired_incoming(time.time())
    finally:
        job.close()
    assert removed == ["retail/a.jsonl"]
    assert not done.exists() and growing.exists() and fresh.exists()
    store = CheckpointStore(checkpoint_path(paths))
    try:
        assert "retail/a.jsonl" not in store.offsets() and "retail/c.jsonl" in store.offsets()
    finally:
        store.close()
    FileStreamJob(_config(paths)).run()  # the growing file's tail still reaches the lake
    assert {"b2-0", "b2-1", "a-3"} <= _lake_ids(paths)


def test_an_offset_of_an_older_checkpoint_without_a_head_still_resumes(data_paths: DataPaths, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the offsets table as checkpoints wrote it before content addressing
        conn.execute("CREATE TABLE offsets (source TEXT PRIMARY KEY, inode INTEGER NOT NULL, position INTEGER NOT NULL)")
        conn.execute("INSERT INTO offsets VALUES ('retail/a.jsonl', 7, 120)")
    store = CheckpointStore(db)
    try:
        (offset,) = store.offsets().values()
    finally:
        store.close()
    assert (offset.inode, offset.position, offset.head) == (7, 120, 0)
