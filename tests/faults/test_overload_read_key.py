"""The read API's optional key (issue 16, item 6): with ``RECSYS_READ_API_KEY`` set, a recommendation
(which logs impressions for the user it names) needs ``X-API-Key``; unset, the read API stays open.

The key is checked before admission control and before the body is read (the fault: a flood of
keyless requests while every in-flight slot is taken): a request without it takes no slot, is never
shed, and learns nothing about its body (401, not 422)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from common.online_features import OnlineFeatures
from common.registry import ArtifactRegistry
from serving.app import create_app
from serving.settings import load_settings

READ_KEY = "read-key-0123456789"
KEY = "write-key-0123456789"
BODY = {"user_id": "r_u03", "domain": "retail", "k": 5}


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _client(root: Path, publish, store: OnlineFeatures, read_key: str | None, api_key: str | None = None,
            in_flight: int = 12) -> TestClient:
    settings = load_settings(domains=["retail"], read_api_key=read_key, api_key=api_key)
    settings = settings.model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts",
        "admission": settings.admission.model_copy(update={"recommendations": in_flight, "events": in_flight})})
    publish(ArtifactRegistry(settings.artifacts_root), "v1")
    return TestClient(create_app(settings, features=store))


def test_with_a_read_key_recommendations_need_it(world, publish, store, tmp_path: Path) -> None:
    with _client(tmp_path, publish, store, READ_KEY) as client:
        missing = client.post("/v1/recommendations", json=BODY)
        wrong = client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": "not-the-key-at-all"})
        right = client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": READ_KEY})
        malformed = client.post("/v1/recommendations", json={**BODY, "k": "many"})
        not_json = client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"})
        malformed_with_key = client.post("/v1/recommendations", json={**BODY, "k": "many"},
                                         headers={"X-API-Key": READ_KEY})
    for refused in (missing, wrong, malformed, not_json):
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "ApiKey"
        assert refused.json() == {"error": "missing or wrong X-API-Key header", "details": []}
    assert right.status_code == 200 and right.json()["items"]
    assert malformed_with_key.status_code == 422


def test_keyless_requests_take_no_in_flight_slot_and_are_never_shed(
    world, publish, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric_delta: type
) -> None:
    answers = []
    with _client(tmp_path, publish, store, READ_KEY, api_key=KEY, in_flight=1) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        delta = metric_delta(services.metrics)
        entered, release = threading.Event(), threading.Event()
        recommend = services.pipeline.recommend

        def held(*args, **kwargs):  # the one admitted request stays in flight until released
            entered.set()
            release.wait(10)
            return recommend(*args, **kwargs)

        monkeypatch.setattr(services.pipeline, "recommend", held)
        holder = threading.Thread(target=lambda: answers.append(
            client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": READ_KEY})))
        holder.start()
        try:
            assert entered.wait(10)  # every slot of /v1/recommendations is taken
            keyless = [client.post("/v1/recommendations", json=BODY),
                       client.post("/v1/recommendations", json={"k": "many"}, headers={"X-API-Key": "wrong-key-0123"}),
                       client.post("/v1/events", json={"events": "not a list"}),
                       client.post("/v1/events", json={"events": []}, headers={"X-API-Key": READ_KEY})]
            over = client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": READ_KEY})
        finally:
            release.set()
            holder.join(10)
    assert [r.status_code for r in keyless] == [401] * 4
    assert over.status_code == 503 and answers[0].status_code == 200
    assert delta("recsys_shed_total", route="/v1/recommendations", reason="in_flight") == 1  # only the keyed one
    assert delta("recsys_requests_total", route="/v1/recommendations", status="401") == 2


def test_without_a_read_key_the_read_api_stays_open(world, publish, store, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_READ_API_KEY", raising=False)
    with _client(tmp_path, publish, store, None) as client:
        assert client.post("/v1/recommendations", json=BODY).status_code == 200
