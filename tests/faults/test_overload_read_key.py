"""The read API's optional key (issue 16, item 6): with ``RECSYS_READ_API_KEY`` set, a recommendation
(which logs impressions for the user it names) needs ``X-API-Key``; unset, the read API stays open."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from common.online_features import OnlineFeatures
from common.registry import ArtifactRegistry
from serving.app import create_app
from serving.settings import load_settings

READ_KEY = "read-key-0123456789"
BODY = {"user_id": "r_u03", "domain": "retail", "k": 5}


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _client(root: Path, publish, store: OnlineFeatures, read_key: str | None) -> TestClient:
    settings = load_settings(domains=["retail"], read_api_key=read_key).model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts"})
    publish(ArtifactRegistry(settings.artifacts_root), "v1")
    return TestClient(create_app(settings, features=store))


def test_with_a_read_key_recommendations_need_it(world, publish, store, tmp_path: Path) -> None:
    with _client(tmp_path, publish, store, READ_KEY) as client:
        missing = client.post("/v1/recommendations", json=BODY)
        wrong = client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": "not-the-key-at-all"})
        right = client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": READ_KEY})
    for refused in (missing, wrong):
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "ApiKey"
        assert refused.json() == {"error": "missing or wrong X-API-Key header", "details": []}
    assert right.status_code == 200 and right.json()["items"]


def test_without_a_read_key_the_read_api_stays_open(world, publish, store, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_READ_API_KEY", raising=False)
    with _client(tmp_path, publish, store, None) as client:
        assert client.post("/v1/recommendations", json=BODY).status_code == 200
