"""Overload never collapses the service (issue 16, item 1).

Slowness is injected with a feature reader that holds ``user_features`` (a gate, or a sleep) in front
of the world's real Feast store; everything else is the real app on a real release. Checked: the
requests over the admission bound are answered 503 + ``Retry-After`` at once while the admitted ones
are served; event batches have a bound of their own and a refused batch loses nothing once retried; a
request that spent most of its budget before its handler ran never runs past its end-to-end deadline
(and one that spent all of it is answered 503); a full worker pool refuses a stage at once instead of
queueing it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from common.online_features import ItemFeatures, OnlineFeatures, UserFeatures
from common.polling import wait_until
from common.registry import ArtifactRegistry
from serving.app import create_app
from serving.metrics import ServingMetrics
from serving.pipeline import POPULARITY_FALLBACK, Pipeline, Request
from serving.release_loader import ReleaseLoader
from serving.releases import ReleaseManager
from serving.settings import AdmissionSettings, Budgets, ServingSettings, load_settings

KEY = "test-key-0123456789"
ROUTE = "/v1/recommendations"
SLOW = Budgets(total=20_000, user_features=10_000, retrieval=5_000, item_features=2_000, ranking=3_000)


class GatedStore:
    """The real store; ``user_features`` waits for ``gate`` (or ``delay`` seconds) before reading."""

    def __init__(self, store: OnlineFeatures, delay: float | None = None) -> None:
        self.store, self.delay = store, delay
        self.gate = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def user_features(self, user_id: str) -> UserFeatures:
        with self._lock:
            self.entered += 1
        if self.delay is None:
            self.gate.wait(timeout=30)
        else:
            time.sleep(self.delay)
        return self.store.user_features(user_id)

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        return self.store.item_features(item_ids)


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _settings(root: Path, publish: Callable[..., str], budgets: Budgets, **admission: int) -> ServingSettings:
    settings = load_settings(domains=["retail"], api_key=KEY).model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts", "budgets_ms": budgets,
        "admission": AdmissionSettings(**admission)})
    publish(ArtifactRegistry(settings.artifacts_root), "v1")
    return settings


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    wait_until(condition, timeout, poll=0.01)


def _ready(client: TestClient) -> None:
    _wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)


def _recommend(client: TestClient, user: str = "r_u03") -> tuple[int, dict, dict, float]:
    started = time.perf_counter()
    response = client.post(ROUTE, json={"user_id": user, "domain": "retail", "k": 5})
    return response.status_code, response.json(), dict(response.headers), time.perf_counter() - started


def test_requests_over_the_bound_are_refused_at_once_and_the_admitted_are_served(
        world, publish, store, tmp_path: Path, metric_delta: type) -> None:
    bound, excess = 3, 2
    reader = GatedStore(store)
    app = create_app(_settings(tmp_path, publish, SLOW, recommendations=bound), features=reader)
    delta = metric_delta(app.state.services.metrics)
    with TestClient(app) as client:
        _ready(client)
        admitted: list[tuple[int, dict, dict, float]] = []
        threads = [threading.Thread(target=lambda: admitted.append(_recommend(client))) for _ in range(bound)]
        for thread in threads:
            thread.start()
        try:
            _wait_until(lambda: reader.entered == bound)  # every admitted request is held in the store
            refused = [_recommend(client) for _ in range(excess)]
        finally:
            reader.gate.set()
            for thread in threads:
                thread.join(timeout=30)
    for status, body, headers, seconds in refused:
        assert status == 503, body
        assert headers["retry-after"] == "1" and "over capacity" in body["error"] and body["details"] == []
        assert seconds < 0.5  # answered at once, not after the admitted ones
    assert sorted(status for status, *_ in admitted) == [200] * bound
    assert all(body["path"] == "full" and not body["degraded"] for _, body, _, _ in admitted)
    assert reader.entered == bound  # the refused requests did no work
    assert delta("recsys_shed_total", route=ROUTE, reason="in_flight") == excess
    assert delta("recsys_requests_total", route=ROUTE, status="503") == excess
    assert delta("recsys_requests_total", route=ROUTE, status="200") == bound


def test_event_batches_have_their_own_bound_and_a_refused_batch_is_kept_once_retried(
        world, publish, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric_delta: type) -> None:
    settings = _settings(tmp_path, publish, SLOW, recommendations=4, events=1)
    app = create_app(settings, features=store)
    streams = app.state.services.streams
    disk = threading.Event()  # a stalled disk: the first batch's append waits for it
    writing = threading.Event()
    real_append = streams.append

    def stalled_append(domain: str, lines: Sequence[bytes]) -> Path:
        writing.set()
        disk.wait(timeout=30)
        return real_append(domain, lines)

    monkeypatch.setattr(streams, "append", stalled_append)
    delta = metric_delta(app.state.services.metrics)
    now = datetime.now(UTC).isoformat()

    def batch(tag: str) -> dict:
        return {"events": [{"event_id": f"{tag}-{i}", "domain": "retail", "user_id": "r_u01", "item_id": "r_i01",
                            "event_type": "view", "timestamp": now} for i in range(3)]}

    with TestClient(app, headers={"X-API-Key": KEY}) as client:
        _ready(client)
        first: list = []
        thread = threading.Thread(target=lambda: first.append(client.post("/v1/events", json=batch("a"))))
        thread.start()
        try:
            assert writing.wait(timeout=30)
            refused = client.post("/v1/events", json=batch("b"))
            status, body, _, _ = _recommend(client)  # reads are bounded separately: still served
        finally:
            disk.set()
            thread.join(timeout=30)
        retried = client.post("/v1/events", json=batch("b"))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
    assert status == 200, body
    assert first[0].status_code == 200 and first[0].json()["accepted"] == 3
    assert retried.status_code == 200 and retried.json()["accepted"] == 3
    written = [orjson.loads(line)["event_id"] for path in (settings.data_paths.root / "incoming").rglob("*.jsonl")
               for line in path.read_bytes().splitlines()]
    events = sorted(e for e in written if not e.startswith("imp"))
    assert {f"{t}-{i}" for t in "ab" for i in range(3)} <= set(events)  # everything acknowledged is there
    assert delta("recsys_shed_total", route="/v1/events", reason="in_flight") == 1


async def _call_with_slow_body(app, body: bytes, body_delay: float) -> tuple[int, dict, float]:
    """One request straight through the ASGI app whose body arrives ``body_delay`` s after its headers
    (a slow client, or time spent queued); returns status, answer and seconds from the headers' arrival."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": ROUTE, "raw_path": ROUTE.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        await asyncio.sleep(body_delay)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    started = time.perf_counter()
    await app(scope, receive, send)
    seconds = time.perf_counter() - started
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(content), seconds


@pytest.fixture
def late_app(world, publish, store, tmp_path: Path) -> Iterator[tuple[TestClient, object]]:
    """Total budget 600 ms; the store answers users in 240 ms (within its own 250 ms stage budget)."""
    budgets = Budgets(total=600, user_features=250, retrieval=150, item_features=50, ranking=150)
    app = create_app(_settings(tmp_path, publish, budgets), features=GatedStore(store, delay=0.24))
    with TestClient(app) as client:
        _ready(client)
        yield client, app


def test_a_request_that_spent_most_of_its_budget_waiting_ends_by_its_deadline(late_app, metric_delta: type) -> None:
    client, app = late_app
    body = orjson.dumps({"user_id": "r_u03", "domain": "retail", "k": 5})
    status, answer, seconds = client.portal.call(_call_with_slow_body, app, body, 0.45)
    assert status == 200, answer
    assert seconds < 0.6 + 0.05  # 450 ms waiting + at most what was left of the 600 ms, not + 240 ms of store
    assert answer["degraded"] and answer["path"] == POPULARITY_FALLBACK and answer["items"]


def test_a_request_past_its_deadline_before_any_work_is_refused(late_app, metric_delta: type) -> None:
    client, app = late_app
    delta = metric_delta(app.state.services.metrics)
    body = orjson.dumps({"user_id": "r_u03", "domain": "retail", "k": 5})
    status, answer, seconds = client.portal.call(_call_with_slow_body, app, body, 0.65)
    assert status == 503 and "deadline" in answer["error"], answer
    assert seconds < 0.65 + 0.05
    assert delta("recsys_shed_total", route=ROUTE, reason="deadline") == 1
    assert delta("recsys_requests_total", route=ROUTE, status="503") == 1


def test_a_full_worker_pool_refuses_a_stage_at_once(world, publish, store, tmp_path: Path,
                                                     metric_delta: type) -> None:
    """Two workers, no queue: two requests hold both in the store; a third request's user read is
    refused at once (the answer degrades) instead of queueing behind them for its whole stage budget."""
    settings = _settings(tmp_path, publish, SLOW, pool_queue=0)
    registry = ArtifactRegistry(settings.artifacts_root)
    live = ReleaseLoader(registry, settings.data_paths, store, 3600).load("retail", "v1")
    metrics = ServingMetrics()
    delta = metric_delta(metrics)
    manager = ReleaseManager(("retail",), registry, lambda domain, version: live, metrics)
    manager.poll_once()
    reader = GatedStore(store)
    pipeline = Pipeline(settings, manager, reader, metrics, workers=2)
    holders = [threading.Thread(target=pipeline.recommend, args=(Request(f"r_u0{i}", "retail", 5),)) for i in (1, 2)]
    try:
        for holder in holders:
            holder.start()
        _wait_until(lambda: reader.entered == 2)
        started = time.perf_counter()
        result = pipeline.recommend(Request("r_u03", "retail", 5), rng=np.random.default_rng(0))
        seconds = time.perf_counter() - started
    finally:
        reader.gate.set()
        for holder in holders:
            holder.join(timeout=30)
        pipeline.close()
    assert result.path == POPULARITY_FALLBACK and result.items
    assert seconds < 0.5  # not the 10 s user-feature budget
    assert reader.entered == 2  # the refused read never ran
    assert delta("recsys_stage_failures_total", domain="retail", stage="user_features", kind="rejected") == 1
