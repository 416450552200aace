"""Every benchmark entry point answers ``--help`` at once, without running the benchmark.

A benchmark run takes minutes and overwrites ``reports/bench/<name>.json``; ``--help`` must only
print usage. Each module is run the way ``make bench`` runs it (``python -m benchmarks.<name>``) in
a subprocess, with a timeout far below any benchmark's run time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ("ranker", "query_tower", "scann_index", "feature_store", "streaming", "closed_loop", "offline_eval", "serving_load",
                "overload", "platform_load", "own_data", "scale", "materialize")
HELP_TIMEOUT_S = 60  # seconds; importing TensorFlow / feast / Spark alone can take longer on a loaded machine


def _help(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=HELP_TIMEOUT_S)


def test_every_benchmark_of_make_bench_is_checked() -> None:
    assert set(BENCHMARKS) <= set(ENTRY_POINTS)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_benchmark_answers_help_without_running(name: str) -> None:
    report = REPO_ROOT / "reports" / "bench" / f"{name}.json"
    before = report.stat().st_mtime_ns if report.exists() else None
    done = _help(f"benchmarks.{name}")
    assert done.returncode == 0, done.stderr[-2000:]
    usage = done.stdout.splitlines()[0]
    assert usage.startswith("usage:") and name in usage, done.stdout[:500]
    assert "options:" in done.stdout and "--help" in done.stdout
    assert (report.stat().st_mtime_ns if report.exists() else None) == before  # no report written


def test_the_runner_answers_help() -> None:
    done = _help("benchmarks")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: python -m benchmarks") and "--only" in done.stdout
