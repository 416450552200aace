"""The overload benchmark: its summaries on hand-made outcomes, then one short real run of the default
serving setup (``recsys serving serve`` with its default workers, behind its nginx front) whose counts
must agree with the service's own metrics, summed over its workers and its front."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.open_loop import Outcome
from benchmarks.overload import Options, meets_target, run, summarize_level
from serving.cli import DEFAULT_WORKERS


def _outcome(status: str, latency: float, path: str = "full") -> Outcome:
    return Outcome(0.0, latency, status, path if status == "200" else "", 10 if status == "200" else 0, 0.0,
                   path == "retrieval_order")


def test_a_level_separates_admitted_shed_and_other_answers() -> None:
    outcomes = [_outcome("200", 0.010), _outcome("200", 0.030, "retrieval_order"), _outcome("503", 0.002),
                _outcome("503", 0.004), _outcome("ConnectError", math.nan)]
    level = summarize_level(outcomes, 2.0, 2.5, seconds=2.0)
    assert (level["sent"], level["admitted"], level["shed"], level["other_errors"]) == (5, 2, 2, 1)
    assert level["offered_rps"] == 2.5 and level["admitted_rps"] == 1.0
    assert level["shed_share"] == 0.4 and level["degraded_share"] == 0.5
    assert level["admitted_latency_ms"]["max"] == 30.0 and level["shed_latency_ms"]["max"] == 4.0
    assert level["other_error_kinds"] == {"ConnectError": 1}


def _level(multiple: float, p99: float, shed_p99: float | None = 2.0, missing: int = 0, errors: int = 0) -> dict:
    return {"multiple": multiple, "admitted_latency_ms": {"p99": p99}, "shed_latency_ms": {"p99": shed_p99},
            "service_alive": True, "workers_replaced": 0, "other_errors": errors, "events": {"missing": missing}}


def test_the_target_is_judged_at_the_top_level() -> None:
    assert meets_target([_level(1, 500.0), _level(3, 90.0)])["met"]  # only the top level's p99 counts
    assert not meets_target([_level(1, 50.0), _level(3, 120.0)])["met"]
    assert not meets_target([_level(3, 50.0, shed_p99=9.0)])["met"]
    assert not meets_target([_level(3, 50.0, missing=1)])["met"]
    assert not meets_target([_level(3, 50.0, errors=2)])["met"]
    assert meets_target([]) == {"measured": False, "met": False}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    from benchmarks.serving_world import WorldSpec, build_world

    return build_world(tmp_path_factory.mktemp("overload") / "world",
                       WorldSpec(items=300, users=150, interactions_per_user=8, ranking_users=150))


@pytest.mark.slow
def test_a_short_run_of_the_default_service_agrees_with_its_metrics(small_world, tmp_path: Path) -> None:
    options = Options(levels=(1.0, 3.0), seconds=2.0, capacity_seconds=2.0, warmup_seconds=1.0, event_batch=5,
                      event_interval_s=0.2, candidates_per_retriever=100)
    report = run(options, small_world.data_root, small_world.artifacts_root, tmp_path / "run")
    assert report["workers"] == DEFAULT_WORKERS and report["capacity_rps"] > 0
    assert report["front"] == "nginx"  # the default, with nginx installed (make setup)
    assert [level["multiple"] for level in report["levels"]] == [1.0, 3.0]
    for level in report["levels"]:
        assert level["sent"] == level["admitted"] + level["shed"] + level["other_errors"] > 0
        assert level["other_errors"] == 0 and level["admitted"] > 0
        http = level["server"]["http"]  # the service's counts, summed over its workers, and its front's
        assert http.get("/v1/recommendations 200", 0) == level["admitted"]
        assert http.get("/v1/recommendations 503", 0) + level["server"]["proxy_shed"] == level["shed"]
        assert sum(level["server"]["shed"].values()) >= http.get("/v1/recommendations 503", 0)
        assert level["service_alive"] and level["workers_alive"] == DEFAULT_WORKERS
        assert level["rss_peak_mb"] > 0
        events = level["events"]
        assert events["acknowledged"] > 0 and events["failed_batches"] == 0
        assert events["found_in_stream"] == events["acknowledged"] and events["missing"] == 0
    assert set(report["meets_target"]) >= {"met", "admitted_p99_ms", "shed_p99_ms", "no_event_lost"}
