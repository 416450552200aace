"""Hostile records on ``POST /v1/events``: one bad record is rejected on its own, never the batch.

A lone surrogate, a 400-digit epoch timestamp and a 300-level nesting each used to make the whole
batch answer 500 (the validator or the dead-letter writer raised), and every retry of the batch
failed the same way. Clients may also not set the server's experiment fields (``arm``,
``propensity``): the A/B metrics read arms from impressions, so a forged one is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.deadletter import DeadLetterWriter, read_dead_letters
from common.paths import DataPaths
from serving.app import create_app
from serving.intake import ingest
from serving.settings import load_settings
from serving.stream import IncomingStreams

KEY = "test-key-0123456789"
DEPTH = 300


def _event(event_id: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id, "domain": "retail", "user_id": "r_u1", "item_id": "r_i1", "event_type": "view",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    event.update(changes)
    return event


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def client(data_paths: DataPaths) -> Iterator[TestClient]:
    settings = load_settings(api_key=KEY).model_copy(update={"max_body_bytes": 1 << 20})
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _incoming(paths: DataPaths) -> list[dict[str, Any]]:
    return [orjson.loads(line) for f in sorted(paths.incoming("retail").glob("*.jsonl"))
            for line in f.read_bytes().splitlines()]


def test_one_hostile_record_is_rejected_alone_and_dead_lettered(client: TestClient, data_paths: DataPaths) -> None:
    surrogate = orjson.dumps(_event("e2")).replace(b'"r_i1"', b'"r_\\ud800"')  # JSON text of a lone surrogate
    body = b"".join([
        b'{"events": [', orjson.dumps(_event("e1")), b",", surrogate, b",",
        orjson.dumps(_event("e3", timestamp="HOLE")).replace(b'"HOLE"', b"9" * 400), b",",
        _deep_json(_event("e4"), "session_id", DEPTH), b"]}",
    ])
    response = client.post("/v1/events", content=body, headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 3)
    assert [r["index"] for r in answer["rejections"]] == [1, 2, 3]
    assert [e["event_id"] for e in _incoming(data_paths)] == ["e1"]

    dead = sorted(read_dead_letters(data_paths, "api"), key=lambda d: d["reason"]["detail"])
    assert len(dead) == 3
    by_field = {d["reason"]["field"]: d for d in dead}
    assert set(by_field) == {"item_id", "timestamp", "session_id"}
    assert all(d["reason"]["code"] and d["reason"]["detail"] for d in dead)
    assert by_field["item_id"]["record"]["event_id"] == "e2"  # the record is kept, its bad text escaped
    assert "\\ud800" in by_field["item_id"]["record"]["item_id"]
    assert by_field["timestamp"]["record"]["timestamp"] == "9" * 400
    assert "truncated" in orjson.dumps(by_field["session_id"]["record"]).decode()  # too deep: marked, not lost


def _deep_json(event: dict[str, Any], field: str, depth: int) -> bytes:
    """``event`` as JSON text with ``field`` nested ``depth`` lists deep (orjson refuses to write it)."""
    text = orjson.dumps({**event, field: "HOLE"})
    return text.replace(b'"HOLE"', b"[" * depth + b'"bottom"' + b"]" * depth)


def test_clients_cannot_set_the_servers_experiment_fields(client: TestClient, data_paths: DataPaths) -> None:
    batch = [_event("e1"), _event("e2", arm="treatment"),
             _event("e3", event_type="impression", request_id="q1", position=1, propensity=0.5)]
    response = client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 2) and answer["reasons"] == {"server_field": 2}
    assert [(r["index"], r["field"]) for r in answer["rejections"]] == [(1, "arm"), (2, "propensity")]
    assert [e["event_id"] for e in _incoming(data_paths)] == ["e1"]
    assert sorted(d["record"]["event_id"] for d in read_dead_letters(data_paths, "api")) == ["e2", "e3"]


_scalars = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
    st.integers(min_value=10**300, max_value=10**500), st.text(st.characters(codec=None)),
)
_json_like = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(st.characters(codec=None), max_size=5), inner, max_size=3), max_leaves=20)
_fields = ["event_id", "domain", "user_id", "item_id", "event_type", "timestamp", "request_id", "position",
           "session_id", "device", "value", "quantity", "arm", "propensity", "ingested_at", "extra"]


@st.composite
def _records(draw: st.DrawFn) -> Any:
    """Valid events with a few fields replaced by anything JSON-like, deep nests, or anything at all."""
    kind = draw(st.sampled_from(["mutated", "deep", "anything"]))
    if kind == "anything":
        return draw(_json_like)
    event = _event(draw(st.text(max_size=8)))
    if kind == "deep":
        event[draw(st.sampled_from(_fields))] = _nested(draw(st.integers(250, 400)))
        return event
    for name in draw(st.lists(st.sampled_from(_fields), min_size=1, max_size=3)):
        event[name] = draw(_json_like)
    return event


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(records=st.lists(_records(), max_size=6))
def test_ingest_never_raises(records: list[Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    paths = DataPaths(tmp_path_factory.mktemp("intake"))
    streams = IncomingStreams(paths, rotate_bytes=1 << 20, rotate_seconds=3600)
    try:
        result = ingest(records, streams, DeadLetterWriter(paths, "api"))
    finally:
        streams.close()
    assert result.accepted + len(result.rejections) == len(records)
    assert len(list(read_dead_letters(paths, "api"))) == len(result.rejections)
