"""The scale benchmark's arithmetic: per-task figures from a sampled timeline and the Airflow DB's task
windows, and log-log slopes (benchmarks/scale.py)."""

from __future__ import annotations

import sqlite3

import pytest

from benchmarks.process_steps import MB
from benchmarks.scale import per_task, slopes, task_windows


def test_each_task_gets_the_samples_inside_its_window() -> None:
    timeline = [(100.0 + t, (1 + t) * MB, MB, 10.0 * t) for t in range(10)]  # RSS grows 1 MB/s, 10 CPU s/s
    windows = [{"task": "a", "state": "success", "start": 101.5, "end": 104.2},
               {"task": "b", "state": "success", "start": 105.0, "end": 105.1},  # shorter than a sample
               {"task": "c", "state": "upstream_failed", "start": None, "end": None}]
    out = per_task(timeline, windows)
    assert out["a"] == {"state": "success", "seconds": 2.7, "cpu_seconds": 40.0, "peak_rss_tree_mb": 5.0,
                        "peak_rss_process_mb": 1.0}  # samples 102..104; CPU from 101 to 105
    assert out["b"]["peak_rss_tree_mb"] == 6.0 and out["b"]["seconds"] == 0.1
    assert out["c"] == {"state": "upstream_failed", "reason": "not run"}


def test_task_windows_read_the_newest_run_in_utc(tmp_path) -> None:
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE task_instance (dag_id, run_id, task_id, state, start_date, end_date)")
        conn.executemany("INSERT INTO task_instance VALUES (?, ?, ?, ?, ?, ?)", [
            ("nightly_retrain", "old", "plan", "success", "2026-01-01 00:00:00", "2026-01-01 00:00:01"),
            ("nightly_retrain", "new", "plan", "success", "2026-01-02 00:00:00.500000", "2026-01-02 00:00:02+00:00"),
            ("nightly_retrain", "new", "publish", None, None, None)])
    windows = task_windows(db)
    assert [w["task"] for w in windows] == ["plan", "publish"]
    assert windows[0]["end"] - windows[0]["start"] == pytest.approx(1.5)
    assert windows[0]["start"] == pytest.approx(1767312000.5) and windows[1]["start"] is None


def _size(events: int, seconds: float, rss: float) -> dict:
    step = {"name": "generate", "ok": True, "seconds": seconds,
            "resources": {"peak_rss_tree_mb": rss, "peak_rss_process_mb": rss}}
    return {"events": events, "steps": [step], "tasks": {"fit": {"state": "success", "seconds": seconds * 2,
                                                                "cpu_seconds": 1.0, "peak_rss_tree_mb": 100.0,
                                                                "peak_rss_process_mb": 50.0}}}


def test_slopes_are_log_log_fits_against_events() -> None:
    out = slopes([_size(1000, 10.0, 200.0), _size(10_000, 100.0, 400.0), _size(100_000, 1000.0, 800.0)])
    assert out["generate"]["seconds"] == {"slope": 1.0, "marginal": 1.0}
    assert out["generate"]["peak_rss_tree_mb"]["slope"] == pytest.approx(0.301, abs=1e-3)  # doubles per 10x
    assert out["night.fit"]["seconds"]["slope"] == 1.0 and out["night.fit"]["peak_rss_tree_mb"]["slope"] == 0.0
    assert slopes([_size(1000, 10.0, 200.0)])["generate"] == {"sizes": 1}  # one size: no slope
