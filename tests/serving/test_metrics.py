"""``/metrics`` over several uvicorn workers (prometheus_client multiprocess mode): the live gauges of a
worker that stopped leave the sum, its counters stay.

Two workers in one test process: the "other" worker's values are stored under a made-up pid, the app
under test (the worker that stops) under this process's pid, both in a scratch multiprocess directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from common.paths import DataPaths
from serving.app import create_app
from serving.metrics import WORKERS_DIR_ENV, ServingMetrics
from serving.settings import load_settings

OTHER_WORKER_PID = 999_999_999


def _summed(metrics: ServingMetrics, name: str, **labels: str) -> float:
    """The value ``/metrics`` answers for one series: the sum over every worker."""
    samples = [s for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples]
    return sum(s.value for s in samples if s.name == name and s.labels == labels)


def test_a_stopped_worker_leaves_the_live_gauges_and_keeps_its_counters(
    data_paths: DataPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    for name in ("PROMETHEUS_MULTIPROC_DIR", WORKERS_DIR_ENV):
        monkeypatch.setenv(name, str(shared))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: OTHER_WORKER_PID))
    other = ServingMetrics()  # a worker that keeps running
    other.impression_queue_capacity.set(100)
    other.requests.labels("/healthz", "200").inc()
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # this process: the worker that stops
    settings = load_settings()
    settings = settings.model_copy(update={"stream": settings.stream.model_copy(update={"impression_queue_slates": 7})})
    app = create_app(settings)

    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert _summed(other, "recsys_impression_queue_capacity") == 107
        assert _summed(other, "recsys_requests_total", route="/healthz", status="200") == 2
    assert _summed(other, "recsys_impression_queue_capacity") == 100  # the stopped worker's gauge is gone
    assert _summed(other, "recsys_requests_total", route="/healthz", status="200") == 2  # its requests still count
