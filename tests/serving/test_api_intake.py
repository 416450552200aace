"""The HTTP API without a release: auth, 4xx messages, event intake (stream + dead letters), probes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from common.deadletter import read_dead_letters
from common.paths import DataPaths
from serving.app import create_app
from serving.settings import ServingSettings, load_settings
from serving.stream import StreamFile

KEY = "test-key-0123456789"


@pytest.fixture
def settings(data_paths: DataPaths) -> ServingSettings:
    return load_settings(api_key=KEY).model_copy(update={"max_events_per_batch": 10, "max_body_bytes": 4096})


@pytest.fixture
def client(settings: ServingSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _event(event_id: str, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": event_id, "domain": "retail", "user_id": "r_u1", "item_id": "r_i1", "event_type": "view",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    event.update(changes)
    return event


def _incoming(paths: DataPaths, domain: str) -> list[dict]:
    return [orjson.loads(line) for f in sorted(paths.incoming(domain).glob("*.jsonl")) for line in f.read_bytes().splitlines()]


def test_events_need_the_api_key(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "wrong-key-0123456"}):
        response = client.post("/v1/events", json={"events": [_event("e1")]}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "missing or wrong X-API-Key header"


def test_events_refused_when_no_key_is_configured(settings: ServingSettings) -> None:
    with TestClient(create_app(settings.model_copy(update={"api_key": None}))) as client:
        response = client.post("/v1/events", json={"events": []}, headers={"X-API-Key": KEY})
    assert response.status_code == 503 and "RECSYS_API_KEY" in response.json()["error"]


def test_event_batch_is_validated_per_record(client: TestClient, data_paths: DataPaths, metric_delta: type) -> None:
    delta = metric_delta(client.app.state.services.metrics)
    batch = [
        _event("e1"),
        _event("e2", event_type="teleport"),
        _event("e1"),  # same event_id again
        "not an object",
        _event("e3", domain="movielens", user_id="ml_u1", item_id="ml_i1"),  # read-only domain
        _event("e4", event_type="impression"),  # an impression needs request_id and position
        _event("e5", domain="banking", user_id="b_u1", item_id="b_p1", event_type="application_start"),
        _event("e6", quantity=2**70),  # beyond 64 bits: rejected, and still dead-lettered
    ]
    response = client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 6)
    assert body["reasons"] == {"unknown_event_type": 1, "duplicate_event_id": 1, "not_an_object": 1,
                               "domain_read_only": 1, "missing_field": 1, "invalid_value": 1}
    assert [r["index"] for r in body["rejections"]] == [1, 2, 3, 4, 5, 7]

    retail, banking = _incoming(data_paths, "retail"), _incoming(data_paths, "banking")
    assert [e["event_id"] for e in retail] == ["e1"] and [e["event_id"] for e in banking] == ["e5"]
    assert retail[0]["ingested_at"].endswith("Z") and retail[0]["timestamp"].endswith("Z")

    dead = list(read_dead_letters(data_paths, "api"))
    assert sorted(d["reason"]["code"] for d in dead) == sorted(body["reasons"])
    records = {d["reason"]["code"]: d["record"] for d in dead}
    assert records["not_an_object"] == "not an object" and records["invalid_value"]["quantity"] == str(2**70)

    assert delta("recsys_events_total", outcome="accepted", reason="") == 2
    assert delta("recsys_events_total", outcome="rejected", reason="duplicate_event_id") == 1
    assert "recsys_events_total" in client.get("/metrics").text


def test_event_limits(client: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    too_many = client.post("/v1/events", json={"events": [_event(f"e{i}") for i in range(11)]}, headers=headers)
    assert too_many.status_code == 413 and "at most 10 events" in too_many.json()["error"]
    too_big = client.post("/v1/events", json={"events": [_event("e1", item_id="r_" + "x" * 5000)]}, headers=headers)
    assert too_big.status_code == 413
    not_json = client.post("/v1/events", content=b"{not json", headers={**headers, "content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"] == "request body is not valid JSON"
    no_events = client.post("/v1/events", json={"items": []}, headers=headers)
    assert no_events.status_code == 422
    assert {d["field"] for d in no_events.json()["details"]} == {"events", "items"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"user_id": "r_u1", "domain": "retail", "k": 0}, 422, "k"),
        ({"user_id": "r_u1", "domain": "retail", "k": 101}, 422, "k"),
        ({"user_id": "r_u1", "domain": "movielens"}, 422, "domain"),
        ({"user_id": "r_u1", "domain": "retail", "exclude": ["r_i"] * 501}, 422, "exclude"),
        ({"user_id": "x_u1", "domain": "retail"}, 422, "user_id"),
        ({"user_id": "b_u1", "domain": "retail"}, 422, "user_id must start with 'r_'"),
        ({"user_id": "r_u1", "domain": "retail", "colour": "red"}, 422, "colour"),
        ({"domain": "retail"}, 422, "user_id"),
        ({"user_id": "r_u1", "domain": "retail"}, 503, "no release is loaded for domain 'retail'"),
    ],
)
def test_recommendation_request_errors(client: TestClient, body: dict, status: int, message: str) -> None:
    response = client.post("/v1/recommendations", json=body)
    assert response.status_code == status
    payload = response.json()
    assert message in payload["error"] or message in {d["field"] for d in payload["details"]}


def test_probes_and_metrics(client: TestClient, metric_delta: type) -> None:
    delta = metric_delta(client.app.state.services.metrics)
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["missing"] == ["retail", "banking"]
    client.get("/nowhere")
    assert delta("recsys_requests_total", route="/readyz", status="503") == 1
    assert delta("recsys_requests_total", route="other", status="404") == 1
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain") and "recsys_requests_total" in metrics.text


def test_stream_file_rotates_by_size_and_age(tmp_path) -> None:
    clock = [1_700_000_000.0]
    stream = StreamFile(tmp_path, rotate_bytes=1024, rotate_seconds=60, clock=lambda: clock[0])
    first = stream.append([b'{"a":1}'])
    assert stream.append([b'{"a":2}']) == first  # small and young: same file
    clock[0] += 61
    second = stream.append([b'{"a":3}'])
    assert second != first and second.name > first.name  # too old: a new file, sorting after the first
    third = stream.append([b"x" * 2000])
    assert third == second  # the size check happens before a write
    fourth = stream.append([b'{"a":4}'])
    assert fourth not in (first, second)
    stream.close()
    assert first.read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (first, second, fourth))
