"""The query-tower benchmark: ``--help`` answers at once, and a tiny real run reports both towers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.query_tower import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_help_answers_without_running() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.query_tower", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: python -m benchmarks.query_tower") and "--repeats" in done.stdout


def test_a_tiny_run_times_both_towers_on_the_same_inputs(tmp_path: Path) -> None:
    out = tmp_path / "query_tower.json"
    assert main(["--repeats", "60", "--items", "300", "--users", "200", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["latency"]) == {"saved_model", "fast_numpy"}
    for figures in report["latency"].values():
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert report["parity"]["max_abs_diff_timed_inputs"] <= 1e-5
    assert report["parity"]["export_check"]["max_abs_diff"] <= 1e-5
    assert report["architecture"]["hidden"] == 128 and report["repeats"] == 60
