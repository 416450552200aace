"""The dashboard: serving stats from a real serving registry, the JSON endpoint, and the page rendered
by real headless Chromium (DOM dump + screenshot) from the A/B job's output files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from matplotlib.image import imread
from prometheus_client import Gauge

from experiments.browser import dump_dom, screenshot, serve_app
from experiments.dashboard import dashboard_router
from experiments.serving_stats import FRESHNESS_METRIC, bucket_quantile, registry_stats
from experiments.svg import PALETTE
from serving.metrics import ServingMetrics


def serving_metrics() -> ServingMetrics:
    """A serving registry after 10 retail requests: retrieval 4 ms x5 and 12 ms x5; 8 full, 2 fallback."""
    metrics = ServingMetrics()
    for seconds in [0.004] * 5 + [0.012] * 5:
        metrics.stage_latency.labels("retail", "retrieval").observe(seconds)
    metrics.stage_latency.labels("retail", "ranking").observe(0.002)
    metrics.paths.labels("retail", "full").inc(8)
    metrics.paths.labels("retail", "popularity_fallback").inc(2)
    freshness = Gauge(FRESHNESS_METRIC, "seconds since the newest feature value", ["domain", "view"],
                      registry=metrics.registry)
    freshness.labels("retail", "user_history").set(42.0)
    return metrics


def test_bucket_quantile_interpolates_inside_buckets() -> None:
    buckets = [(0.01, 5.0), (0.02, 10.0), (float("inf"), 10.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.01)
    assert bucket_quantile(0.95, buckets) == pytest.approx(0.01 + 0.01 * 4.5 / 5)
    assert bucket_quantile(0.5, [(float("inf"), 4.0)]) == 0.0
    assert np.isnan(bucket_quantile(0.5, []))


def test_registry_stats_reads_the_serving_metrics() -> None:
    stats = registry_stats(serving_metrics().registry)
    retrieval = next(s for s in stats.latency if s.stage == "retrieval")
    assert retrieval.count == 10 and retrieval.mean_ms == pytest.approx(8.0)
    # buckets (ms) ... 2.5, 5 (5 obs), 10, 20 (10 obs): p50 = 5 ms, p95 = 10 + 10 * 4.5 / 5 = 19 ms
    assert (retrieval.p50_ms, retrieval.p95_ms) == (pytest.approx(5.0), pytest.approx(19.0))
    assert stats.path_shares == {"retail": {"full": 0.8, "popularity_fallback": 0.2}}
    assert stats.freshness_seconds == {"retail": {"user_history": 42.0}}


@pytest.fixture
def dashboard_app(analysed_lake) -> FastAPI:
    app = FastAPI()
    app.include_router(dashboard_router(analysed_lake.paths, registry=serving_metrics().registry))
    return app


def test_data_endpoint(dashboard_app: FastAPI) -> None:
    data = TestClient(dashboard_app).get("/dashboard/data").json()
    retail = data["domains"]["retail"]
    assert len(retail["daily"]) == 4
    assert retail["comparison"]["window"] == {"start": "2025-03-10", "end": "2025-03-11"}
    assert next(r for r in retail["daily"] if r["arm"] == "treatment" and r["date"] == "2025-03-11")["aov"] is None
    assert data["serving"]["path_shares"]["retail"]["popularity_fallback"] == pytest.approx(0.2)


def test_page_renders_in_headless_chromium(dashboard_app: FastAPI, tmp_path: Path) -> None:
    with serve_app(dashboard_app) as base:
        dom = dump_dom(f"{base}/dashboard")
        png = screenshot(f"{base}/dashboard", tmp_path / "dashboard.png", width=1280, height=2000)
    assert "<title>recsys dashboard</title>" in dom
    points = re.findall(r'<circle class="point"[^>]*data-series="(\w+)" data-x="([\d-]+)" data-value="([^"]+)"', dom)
    # 9 daily charts of retail (AOV has no treatment value on day 2), 2 arms x 2 days each
    assert {series for series, _, _ in points} == {"control", "treatment"}
    assert len(points) == 9 * 4 - 1
    assert ("control", "2025-03-10", repr(1 / 6)) in points  # CTR of control on day 1
    intervals = re.findall(r'<g class="interval" data-series="([^"]+)"', dom)
    assert len(intervals) == 5  # the lift CI of every retail metric
    bars = {(s, x): float(v) for s, x, v in
            re.findall(r'<rect class="bar"[^>]*data-series="([^"]+)" data-x="([^"]+)" data-value="([^"]+)"', dom)}
    assert bars[("p95", "retail:retrieval")] == pytest.approx(19.0)
    assert bars[("popularity_fallback", "retail")] == pytest.approx(0.2)
    assert bars[("age", "retail:user_history")] == 42.0
    assert 'class="chart empty"' not in dom

    image = imread(png)
    assert image.shape[:2] == (2000, 1280)
    rgb = (image[..., :3] * 255).round().astype(int)
    for color in PALETTE[:2]:  # the control and treatment lines/bars are visibly drawn
        target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(rgb - target).sum(axis=-1) < 30).sum() > 200
