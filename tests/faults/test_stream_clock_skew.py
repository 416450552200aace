"""Fault: a client clock 23 h fast. One click stamped a day ahead must not move the streaming
watermark past the server's clock, nor empty every item's 1-day window for a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd

from beam_jobs.checkpoint import CheckpointStore
from beam_jobs.job import FileStreamJob, StreamConfig, checkpoint_path, state_dir
from common.lake import write_catalog
from common.online_features import OnlineFeatures
from common.paths import DataPaths
from feature_repo.store import apply, get_store

ITEMS = {"r_i1": "Shoes>Running>Trail", "r_i2": "Bags>City"}
DAY_HOURS_AGO = (20, 12, 6, 1, 0)  # the day's views of r_i1, hours before now


def _event(n: int, item: str, kind: str, at: datetime, ingested: datetime) -> bytes:
    record = {"event_id": f"skew-{n}", "domain": "retail", "user_id": f"r_u{n}", "item_id": item,
              "event_type": kind, "timestamp": at.isoformat(), "session_id": f"s-{n}",
              "ingested_at": ingested.isoformat()}
    if kind == "click":
        record.update(request_id=f"q{n}", position=1)
    return orjson.dumps(record)


def _append(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


def _run_once(paths: DataPaths) -> dict:
    return FileStreamJob(StreamConfig(paths, once=True, seed_users=False)).run()


def test_a_click_23_hours_ahead_keeps_the_watermark_at_ingest_time_and_the_day_counted(data_paths: DataPaths) -> None:
    paths = data_paths
    write_catalog(pd.DataFrame([
        {"item_id": i, "domain": "retail", "title": i, "description": "", "category": c, "price": 10.0,
         "margin": 0.2, "inventory": 5, "launched_at": datetime(2024, 1, 1, tzinfo=UTC)} for i, c in ITEMS.items()
    ]), paths, "retail")
    apply(get_store(paths), paths)
    incoming = paths.incoming("retail") / "events.jsonl"
    now = datetime.now(UTC).replace(microsecond=0)
    day = [now - timedelta(hours=h) for h in DAY_HOURS_AGO]
    _append(incoming, [_event(n, "r_i1", "view", at, at) for n, at in enumerate(day)])
    _run_once(paths)

    _append(incoming, [_event(99, "r_i2", "click", now + timedelta(hours=23), now)])  # the phone 23 h fast
    summary = _run_once(paths)

    store = CheckpointStore(checkpoint_path(paths))
    try:
        watermark = store.watermark("retail")
    finally:
        store.close()
    assert watermark is not None and watermark <= now.timestamp()
    assert summary["counters"].get("event_time_clamped") == 1
    exported = (state_dir(paths) / "metrics.prom").read_text()
    assert "recsys_stream_event_time_clamped_total 1.0" in exported
    items = OnlineFeatures(get_store(paths)).item_features(list(ITEMS)).columns
    assert list(items["popularity_1d"]) == [len(day), 1]  # the day's views still counted; the click too
