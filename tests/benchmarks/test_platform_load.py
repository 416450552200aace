"""The platform-load benchmark: its summaries and targets on hand-made data, the children it starts are
``recsys run``'s, then one short real run of the platform (streaming job + serving API under the
supervisor, on a small world) whose checks must hold: all alive, no acknowledged event missing from
the lake or the online store."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from benchmarks.open_loop import Outcome
from benchmarks.platform_load import (
    SERVING,
    STREAMING,
    Options,
    meets_target,
    online_check,
    run,
    summarize_requests,
)
from benchmarks.stream_restarts import lake_check
from cli.run import platform_children
from common.paths import DataPaths


def _outcome(status: str, latency: float, path: str = "full") -> Outcome:
    return Outcome(0.0, latency, status, path if status == "200" else "", 10 if status == "200" else 0, 0.0,
                   path in ("retrieval_order", "popularity_fallback"))


def test_requests_are_split_into_admitted_shed_and_other() -> None:
    outcomes = [_outcome("200", 0.010), _outcome("200", 0.030, "popularity_fallback"), _outcome("200", 0.020),
                _outcome("503", 0.002), _outcome("ConnectError", math.nan)]
    summary = summarize_requests(outcomes, seconds=2.0)
    assert (summary["answers"], summary["ok"], summary["shed"], summary["other"]) == (5, 3, 1, 1)
    assert summary["other_kinds"] == {"ConnectError": 1} and summary["ok_rps"] == 1.5
    assert summary["degraded_share"] == round(1 / 3, 4)
    assert summary["admitted_latency_ms"]["max"] == 30.0 and summary["shed_latency_ms"]["max"] == 2.0


GOOD = {
    "alive": {"children_alive": {STREAMING: True, SERVING: True}, "restarts": 0, "child_failed": None,
              "serving_workers_at_start": 2, "serving_workers_alive": 2, "serving_workers_replaced": 0},
    "drain": {"drained": True},
    "lake": {"lost_events": 0, "double_counted_events": 0},
    "online": {"items_with_wrong_counters": 0, "users_with_wrong_last_event": 0},
    "requests": {"other": 0},
    "events": {"failed_batches": 0},
}


def _with(path: str, value: object) -> dict:
    report = copy.deepcopy(GOOD)
    *parents, leaf = path.split(".")
    node = report
    for key in parents:
        node = node[key]
    node[leaf] = value
    return report


@pytest.mark.parametrize(("change", "missed"), [
    (("alive.restarts", 1), "all_alive"),
    (("alive.child_failed", "streaming job keeps crashing"), "all_alive"),
    (("alive.serving_workers_replaced", 1), "all_alive"),
    (("alive.children_alive", {STREAMING: False, SERVING: True}), "all_alive"),
    (("lake.lost_events", 1), "no_lost_events_lake"),
    (("drain.drained", False), "no_lost_events_lake no_lost_events_online"),  # not drained: nothing is known
    (("online.items_with_wrong_counters", 3), "no_lost_events_online"),
    (("online.users_with_wrong_last_event", 1), "no_lost_events_online"),
    (("requests.other", 2), "no_other_errors"),
    (("events.failed_batches", 1), "no_other_errors"),
])
def test_each_target_can_be_missed(change: tuple[str, object], missed: str) -> None:
    assert all(meets_target(GOOD).values())
    verdict = meets_target(_with(*change))
    assert {k for k, v in verdict.items() if not v} == set(missed.split())


def test_the_children_are_recsys_runs() -> None:
    specs = platform_children(DataPaths(Path("/tmp/data")), 8123, {"A": "1"})
    assert [s.name for s in specs] == [STREAMING, SERVING]
    assert [list(s.argv[1:]) for s in specs] == [["-m", "cli", "stream", "run"],
                                                  ["-m", "cli", "serving", "serve", "--port", "8123"]]
    assert all(s.env == {"A": "1", "RECSYS_DATA_DIR": "/tmp/data"} for s in specs)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    from benchmarks.serving_world import WorldSpec, build_world

    return build_world(tmp_path_factory.mktemp("platform") / "world",
                       WorldSpec(items=300, users=150, interactions_per_user=8, ranking_users=150))


@pytest.mark.slow
def test_a_short_run_loses_no_event_and_keeps_every_process(small_world, tmp_path: Path) -> None:
    options = Options(seconds=4.0, connections=32, warmup_seconds=1.0, event_batch=5, event_interval_s=0.2,
                      drain_timeout_s=180.0)
    report = run(options, small_world.data_root, small_world.artifacts_root, tmp_path / "run")
    assert "error" not in report, report.get("error")
    alive = report["alive"]
    assert all(alive["children_alive"].values()) and alive["restarts"] == 0 and alive["child_failed"] is None
    assert alive["serving_workers_alive"] == alive["serving_workers_at_start"] > 0
    requests = report["requests"]
    assert requests["ok"] > 0 and requests["answers"] == requests["ok"] + requests["shed"] + requests["other"]
    events = report["events"]
    assert events["acknowledged"] > 0 and events["acknowledged"] == events["acknowledged_ids"]
    assert report["drain"]["drained"] and report["backlog_after_stop_bytes"] == 0
    lake, online = report["lake"], report["online"]
    assert lake["acknowledged_events"] == events["acknowledged"]
    assert lake["lost_events"] == 0 and lake["double_counted_events"] == 0
    assert online["streamed_impressions"] > 0 and online["items_checked"] > 0 and online["users_checked"] > 0
    assert online["items_with_wrong_counters"] == 0 and online["users_with_wrong_last_event"] == 0
    assert report["memory"]["peak_rss_tree_mb"] > 0
    assert all(report["meets_target"].values()), report["meets_target"]
    # the same checks on the same data root do see an event that is missing, or one too many
    paths = DataPaths(Path(report["data_root"]))
    assert lake_check(paths, ["never-posted"])["lost_events"] == 1
    assert online_check(paths, [])["items_with_wrong_counters"] > 0  # the posted views are counted online
