"""The serving load benchmark: its pure parts on hand-computed cases, then one short real run.

The real run builds a small world with :mod:`benchmarks.serving_world` (real retrievers, ranker and
Feast store), starts the real service as a subprocess and drives it open-loop for two seconds; the
client's counts must agree exactly with the deltas of the service's own Prometheus metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from benchmarks.open_loop import Outcome, open_loop_schedule, percentiles_ms
from benchmarks.prom_samples import add_samples, histogram_summary, metric_delta, parse_metrics
from benchmarks.serving_load import (
    Options,
    meets_target,
    run,
    server_summary,
    summarize_outcomes,
)
from benchmarks.serving_requests import request_bodies
from serving.metrics import ServingMetrics

# ---- the open-loop schedule and the requests ----------------------------------------------------


def test_uniform_schedule_is_evenly_spaced_and_bounded() -> None:
    offsets = open_loop_schedule(50, 2.0, "uniform")
    assert len(offsets) == 100 and offsets[0] == 0.0 and offsets[-1] < 2.0
    assert np.allclose(np.diff(offsets), 1 / 50)


def test_poisson_schedule_has_the_rate_on_average_and_does_not_wait() -> None:
    rng = np.random.default_rng(3)
    offsets = open_loop_schedule(150, 40.0, "poisson", rng)
    expected = 150 * 40
    assert abs(len(offsets) - expected) < 5 * math.sqrt(expected)  # Poisson count: sd = sqrt(mean)
    assert offsets[0] == 0.0 and offsets[-1] < 40.0 and np.all(np.diff(offsets) >= 0)
    gaps = np.diff(offsets)
    assert abs(gaps.mean() - 1 / 150) < 0.1 / 150
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.1  # exponential gaps: bursts, not a metronome


@pytest.mark.parametrize(("rate", "seconds", "arrivals"), [(0, 1, "poisson"), (5, -1, "uniform"), (5, 1, "bursty")])
def test_schedule_refuses_nonsense(rate: float, seconds: float, arrivals: str) -> None:
    with pytest.raises(ValueError):
        open_loop_schedule(rate, seconds, arrivals)


def test_request_bodies_mix_known_and_new_users() -> None:
    known = [f"r_u{i:06d}" for i in range(50)]
    bodies = [orjson.loads(b) for b in request_bodies(known, 2000, "retail", "r_", 0.2, np.random.default_rng(1))]
    new = [b for b in bodies if b["user_id"] not in known]
    assert 0.15 < len(new) / len(bodies) < 0.25
    assert all(b["user_id"].startswith("r_u_new") for b in new)
    assert {b["k"] for b in bodies} == {10} and {b["domain"] for b in bodies} == {"retail"}
    assert {b["context"]["device"] for b in bodies} == {"web", "ios", "android"}


# ---- summaries ----------------------------------------------------------------------------------


def _outcome(due: float, latency: float, status: str = "200", path: str = "full", items: int = 10) -> Outcome:
    return Outcome(due, latency, status, path if status == "200" else "", items if status == "200" else 0, 0.001)


def test_outcome_summary_counts_errors_degraded_answers_and_short_slates() -> None:
    outcomes = [
        _outcome(0.0, 0.010), _outcome(0.5, 0.020), _outcome(1.0, 0.030, items=9),
        _outcome(1.5, 0.040, path="retrieval_order"), _outcome(1.9, math.nan, status="TimeoutError"),
        _outcome(1.95, 0.005, status="503"),
    ]
    summary = summarize_outcomes(outcomes, rate=3, seconds=2.0)
    assert (summary["sent"], summary["ok"], summary["errors"]) == (6, 4, 2)
    assert summary["error_kinds"] == {"TimeoutError": 1, "503": 1}
    assert summary["short_slates"] == 1
    assert summary["paths"] == {"full": 3, "retrieval_order": 1} and summary["degraded_share"] == 0.25
    assert summary["achieved_rps"] == 2.0  # 4 answers over the 2 s the schedule spans
    latency = summary["latency_ms"]
    assert latency["p50"] == 25.0 and latency["max"] == 40.0 and latency["mean"] == 25.0
    assert latency["p99"] == pytest.approx(float(np.percentile([10, 20, 30, 40], 99)), abs=0.01)


def test_an_answer_after_the_schedule_stretches_the_span() -> None:
    summary = summarize_outcomes([_outcome(0.0, 0.01), _outcome(0.9, 3.1)], rate=2, seconds=1.0)
    assert summary["achieved_rps"] == 0.5  # 2 answers, the last one 4 s after the start


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles_ms([math.nan]) == {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}


def _scrape(metrics: ServingMetrics) -> dict:
    return parse_metrics(metrics.render().decode())


def test_metric_deltas_and_histogram_quantiles_from_a_real_registry() -> None:
    metrics = ServingMetrics()
    metrics.stage_latency.labels("retail", "total").observe(0.3)  # before: must not count
    before = _scrape(metrics)
    for seconds in (0.004, 0.015, 0.04, 0.2):
        metrics.stage_latency.labels("retail", "total").observe(seconds)
    metrics.stage_latency.labels("retail", "ranking").observe(0.002)
    metrics.paths.labels("retail", "full").inc(3)
    metrics.paths.labels("retail", "retrieval_order").inc()
    metrics.requests.labels("/v1/recommendations", "200").inc(4)
    for proposed in (250, 250, 230):
        metrics.candidates.labels("retail", "content").observe(proposed)
    for ranked in (500, 500, 480):
        metrics.ranked.labels("retail", "full").observe(ranked)
    delta = metric_delta(before, _scrape(metrics))

    total = histogram_summary(delta, "recsys_stage_latency_seconds", 1000.0, domain="retail", stage="total")
    # Buckets (ms) ... 10, 20, 30, 50, 75, 100, 150, 250: the 4 values fall in (2.5,5], (10,20], (30,50], (150,250].
    assert total["count"] == 4 and total["mean"] == pytest.approx(64.75)
    assert total["p50"] == pytest.approx(20.0)  # rank 2 = the top of (10, 20]
    assert total["p95"] == pytest.approx(230.0)  # rank 3.8: 80 % into (150, 250]
    assert total["p99"] == pytest.approx(246.0)

    server = server_summary(delta, "retail")
    assert set(server["stage_ms"]) == {"total", "ranking"}
    assert server["paths"] == {"full": 3.0, "retrieval_order": 1.0}
    assert server["http"] == {"/v1/recommendations 200": 4.0}
    assert server["candidates_per_retriever"] == {"content": pytest.approx(243.333, abs=1e-3)}
    assert server["ranked_candidates"]["full"] == {"requests": 3.0, "mean": pytest.approx(493.333, abs=1e-3),
                                                   "share_with_500": pytest.approx(2 / 3, abs=1e-4)}
    assert not server["stage_failures"]

    both = server_summary(add_samples([delta, delta]), "retail")  # two workers' deltas add up
    assert both["paths"] == {"full": 6.0, "retrieval_order": 2.0}
    assert both["stage_ms"]["total"]["p50"] == total["p50"] and both["stage_ms"]["total"]["count"] == 8


def test_a_quantile_in_the_overflow_bucket_reports_the_last_bound() -> None:
    metrics = ServingMetrics()
    before = _scrape(metrics)
    metrics.stage_latency.labels("retail", "total").observe(3.0)  # beyond the last bucket (1 s)
    summary = histogram_summary(metric_delta(before, _scrape(metrics)), "recsys_stage_latency_seconds", 1000.0,
                                stage="total")
    assert summary["p99"] == 1000.0 and summary["mean"] == 3000.0


def _rate(rate: float, p99: float, errors: int = 0, degraded: float = 0.0, ranked: float = 500.0) -> dict:
    return {"rate_target": rate, "latency_ms": {"p99": p99}, "errors": errors, "short_slates": 0,
            "degraded_share": degraded, "server": {"ranked_candidates": {"full": {"mean": ranked}}}}


def test_the_target_needs_every_condition_at_150_per_second() -> None:
    assert meets_target([_rate(50, 10.0), _rate(150, 42.0)])["met"]
    assert not meets_target([_rate(150, 51.0)])["met"]
    assert not meets_target([_rate(150, 20.0, errors=1)])["met"]
    assert not meets_target([_rate(150, 20.0, degraded=0.02)])["met"]
    assert not meets_target([_rate(150, 20.0, ranked=300.0)])["met"]
    assert meets_target([_rate(50, 10.0)]) == {"measured": False, "met": False}


# ---- one short real run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    """A real world at toy size: 300 items, 150 users, trained retrievers and ranker, a filled store."""
    from benchmarks.serving_world import WorldSpec, build_world

    return build_world(tmp_path_factory.mktemp("serving_load") / "world",
                       WorldSpec(items=300, users=150, interactions_per_user=8, ranking_users=150))


@pytest.mark.slow
def test_a_short_run_against_the_real_service_agrees_with_its_metrics(small_world, tmp_path: Path) -> None:
    options = Options(rates=(20.0,), seconds=2.0, warmup_seconds=1.0, warmup_rate=10.0, workers=1,
                      candidates_per_retriever=100, unknown_share=0.2)
    report = run(options, small_world.data_root, small_world.artifacts_root, tmp_path / "run")
    (measured,) = report["rates"]
    assert measured["sent"] > 20 and measured["ok"] == measured["sent"] and measured["errors"] == 0
    assert measured["short_slates"] == 0
    latency = measured["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]

    server = measured["server"]  # the service's own counts over the same window
    assert server["http"] == {"/v1/recommendations 200": measured["ok"]}
    assert server["paths"] == measured["paths"]
    assert {"full", "cold_start"} <= set(measured["paths"])  # known users and brand-new ones
    assert server["stage_ms"]["total"]["count"] == measured["ok"]
    assert set(server["stage_ms"]) >= {"user_features", "retrieval", "ranking", "reranking", "total"}
    assert 0 < server["candidates_per_retriever"]["popular"] <= 100
    assert 100 < server["ranked_candidates"]["full"]["mean"] <= 300
    assert measured["cpu"]["server_seconds"] > 0
    assert report["release"] == small_world.version and report["meets_target"]["measured"] is False


def test_unknown_profile_attributes_are_read_as_unknown(small_world) -> None:
    """The world's retail users have no banking attributes (null in the store): they must come back as
    None -- unknown, failing eligibility rules -- not as 0 / "" / False, while real values stay."""
    from common.online_features import OnlineFeatures
    from common.paths import DataPaths
    from feature_repo.store import get_store
    from serving.features import user_context

    reader = OnlineFeatures(get_store(DataPaths(small_world.data_root)))
    user = reader.user_features("r_u000001")
    assert user.found["user_profile"]
    banking = ("age", "income", "credit_score", "dti", "has_arrears")
    assert {name: user.values[name] for name in banking} == dict.fromkeys(banking)
    assert user.values["country"] and user.values["purchase_count_30d"] is not None  # real values are kept
    context = user_context(user, "r_u000001")
    assert (context.age, context.dti, context.has_arrears) == (None, None, None)
    nobody = reader.user_features("r_u999999")  # no row at all: dtype defaults, flagged as not found
    assert not any(nobody.found.values()) and nobody.values["dti"] == 0.0
