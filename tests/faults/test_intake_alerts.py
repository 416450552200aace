"""Impression loss is visible and alertable: submitted vs written vs lost, the queue's depth, alert rules.

The fault: the disk stalls while slates are served (the stream file's lock is held, as a hanging
fsync holds it) and the queue overflows. The app's metrics must show the impressions handed to the
writer, the ones queued (the queue-depth gauge: what a kill -9 would lose uncounted), the ones
dropped, and, once the disk recovers, ``submitted == written + lost``. The alert rules of
``config/prometheus/alerts.yml`` may only name metrics the service exports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from common.paths import DataPaths
from serving.app import create_app
from serving.metrics import ServingMetrics
from serving.settings import load_settings
from serving.stream import IncomingStreams, Pending

ALERTS = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(recsys_[a-z0-9_]+)\b")


def _rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_alert_rules_name_only_metrics_the_service_exports() -> None:
    exported = set(re.findall(r"^# TYPE (\S+) ", ServingMetrics().render().decode(), flags=re.MULTILINE))
    rules = _rules()
    assert {r["alert"] for r in rules} >= {"ImpressionsLost", "ImpressionsWrittenFarBelowServed", "ImpressionQueueFilling"}
    for rule in rules:
        named = set(METRIC.findall(rule["expr"]))
        assert named, rule["alert"]
        assert named <= exported, f"{rule['alert']} names metrics the service does not export: {named - exported}"
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    lost = next(r for r in _rules() if r["alert"] == "ImpressionsLost")
    assert "recsys_impressions_lost_total[5m]" in lost["expr"]
    cannot_store = next(r for r in rules if r["alert"] == "EventIntakeCannotStore")
    # storage failures only: not admission control's 503s, nor the 503 of intake without an API key
    assert METRIC.findall(cannot_store["expr"]) == ["recsys_event_storage_failures_total"]


@contextmanager
def stalled(streams: IncomingStreams, domain: str) -> Iterator[None]:
    """Every append to the domain's stream blocks until the block ends (fault injection: a hung fsync)."""
    lock = streams.for_domain(domain)._lock
    with lock:
        yield


def _slate(tag: str) -> Pending:
    return Pending("retail", 5, lambda: [orjson.dumps({"slate": tag, "slot": i}) for i in range(5)])


def test_submitted_written_lost_and_the_queue_depth_account_for_every_impression(
    data_paths: DataPaths, metric_delta: type
) -> None:
    settings = load_settings().model_copy(update={"stream": load_settings().stream.model_copy(
        update={"impression_queue_slates": 3})})
    app = create_app(settings)
    services = app.state.services
    delta = metric_delta(services.metrics)
    writer = services.impressions

    def gauge(name: str) -> float:
        return next(s.value for m in services.metrics.registry.collect() for s in m.samples if s.name == name)

    with TestClient(app):
        assert gauge("recsys_impression_queue_capacity") == 3
        with stalled(services.streams, "retail"):
            writer.submit(_slate("first"))
            assert writer.flush(timeout=0.2) is False  # the writer took "first" and hangs on the disk
            accepted = [writer.submit(_slate(f"s{i}")) for i in range(5)]
            assert accepted == [True] * 3 + [False] * 2
            assert gauge("recsys_impression_queue_slates") == 3  # queued, in memory: a kill -9 loses them
            assert delta("recsys_impressions_submitted_total", domain="retail") == 6 * 5
            assert delta("recsys_impressions_lost_total", domain="retail", reason="queue_full") == 2 * 5
        assert writer.flush(timeout=10)
        assert gauge("recsys_impression_queue_slates") == 0
    submitted = delta("recsys_impressions_submitted_total", domain="retail")
    written = delta("recsys_impressions_logged_total", domain="retail")
    lost = delta("recsys_impressions_lost_total", domain="retail", reason="queue_full")
    assert (submitted, written, lost) == (30, 20, 10)


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_API_KEY", raising=False)
