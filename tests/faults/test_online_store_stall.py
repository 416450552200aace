"""Fault: the Redis online store stalls (its process is stopped with SIGSTOP) under a live service.

Everything is real: a ``redis-server`` holding the serving world's features, the app under uvicorn
with ``RECSYS_ONLINE_STORE=redis``, the world's trained release, httpx with a hard per-request
timeout (a hang is a clean failure, not a stuck test). While the server is stopped its TCP
connections still accept bytes and never answer: the worst kind of outage. Requests must answer
within the budget from the degraded path, ``/readyz`` must stay 200 and say the store is degraded,
a newly promoted release must go live, and once the server runs again the circuit must close.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from common.paths import DataPaths
from common.polling import wait_until
from common.registry import ArtifactRegistry
from feature_repo.redis_server import free_port, local_redis, server_pid
from feature_repo.store import apply, get_store
from serving.app import create_app
from serving.settings import CircuitSettings, ServingSettings, load_settings

POLL_SECONDS = 0.5
LOAD_ALLOWANCE_S = 15.0  # loading a release (TensorFlow retrievers, smoke batch) on a busy 2-core CI box
ANSWER_WITHIN_S = 1.0  # end to end; the stage budgets add up to 100 ms
USER = "r_u03"  # arm "treatment" (full pipeline); the control arm is the legacy segment list



def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took, fails past ``timeout``."""
    started = time.monotonic()
    wait_until(condition, timeout, what)
    return time.monotonic() - started


def _copy_online_rows(source: FeatureStore, target: FeatureStore, ids: dict[str, list[str]]) -> None:
    """Every row of ``source``'s online store for ``ids`` (join key -> entity ids) into ``target``'s."""
    for view in source.list_feature_views():
        (join_key,) = view.join_keys
        keys = [EntityKey(join_keys=[join_key], entity_values=[Value(string_val=i)]) for i in ids[join_key]]
        rows = source._get_provider().online_read(source.config, view, keys)
        data = [(key, values, ts, ts) for key, (ts, values) in zip(keys, rows, strict=True) if values]
        target._get_provider().online_write_batch(target.config, target.get_feature_view(view.name), data, None)


@pytest.fixture
def redis_world(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServingSettings, int]]:
    """Serving settings over a Redis store holding the world's features, and the redis-server's pid."""
    data = DataPaths(tmp_path / "data")
    with local_redis() as url:
        pid = server_pid(url)
        store = get_store(data, "redis", url)
        apply(store, data)
        users = [f"r_u{i:02d}" for i in range(24)]
        _copy_online_rows(get_store(world.store_paths), store, {"user_id": users,
                                                                "item_id": list(world.catalog["item_id"])})
        monkeypatch.setenv("RECSYS_REDIS_URL", url)
        settings = load_settings(domains=["retail"]).model_copy(update={
            "data_root": data.root, "artifacts_root": tmp_path / "artifacts", "online_store": "redis",
            "release_poll_seconds": POLL_SECONDS, "item_cache_ttl_seconds": 2.0,  # read-ahead runs every poll
            "store_circuit": CircuitSettings(failures=3, cool_down_seconds=1.0)})
        try:
            yield settings, pid
        finally:
            os.kill(pid, signal.SIGCONT)  # a stopped server would not stop on SIGTERM


@pytest.fixture
def served(redis_world: tuple[ServingSettings, int]) -> Iterator[httpx.Client]:
    """The app under a real uvicorn; an httpx client that gives up on any call after 5 s."""
    settings, _ = redis_world
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    _wait_until(lambda: server.started, 30.0, "uvicorn started")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=5.0) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _recommend(client: httpx.Client) -> tuple[dict, float]:
    started = time.monotonic()
    response = client.post("/v1/recommendations", json={"user_id": USER, "domain": "retail", "k": 5})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return response.json(), elapsed


def test_a_stalled_redis_degrades_answers_but_not_readiness_or_release_swaps(
    redis_world: tuple[ServingSettings, int], served: httpx.Client, publish: Callable[..., str]
) -> None:
    settings, redis_pid = redis_world
    registry = ArtifactRegistry(settings.artifacts_root)
    client = served
    publish(registry, "v1")
    _wait_until(lambda: client.get("/healthz").json()["releases"] == {"retail": "v1"}, LOAD_ALLOWANCE_S,
                "v1 live")
    _recommend(client)  # warm
    assert "store" not in client.get("/readyz").json()

    os.kill(redis_pid, signal.SIGSTOP)
    answers = [_recommend(client) for _ in range(3)]

    def opened() -> bool:  # each stalled read fails after the Redis socket timeout (0.5 s)
        answers.append(_recommend(client))
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.json()
        return ready.json().get("store") == "open circuit"

    took = _wait_until(opened, 5.0, "the store reported degraded")
    print(f"circuit open {took:.2f} s after SIGSTOP")
    slowest = max(elapsed for _, elapsed in answers)
    print(f"stalled store: {len(answers)} answers, slowest {slowest * 1000:.0f} ms")
    assert slowest < ANSWER_WITHIN_S
    assert all(a["degraded"] and a["path"] == "popularity_fallback" and a["items"] for a, _ in answers)
    assert 'recsys_online_store_circuit{state="closed"} 0.0' in client.get("/metrics").text

    publish(registry, "v2")
    took = _wait_until(lambda: client.get("/healthz").json()["releases"] == {"retail": "v2"},
                       3 * POLL_SECONDS + LOAD_ALLOWANCE_S, "v2 live while the store is stalled")
    print(f"v2 live {took:.2f} s after its promotion, the store stalled")
    answer, elapsed = _recommend(client)
    assert answer["release"] == "v2" and answer["degraded"] and elapsed < ANSWER_WITHIN_S

    os.kill(redis_pid, signal.SIGCONT)

    def closed() -> bool:
        answer, _ = _recommend(client)  # reads are what probe the store
        return "store" not in client.get("/readyz").json() and answer["path"] != "popularity_fallback"

    took = _wait_until(closed, 10.0, "circuit closed after SIGCONT")
    print(f"circuit closed {took:.2f} s after SIGCONT")
    assert 'recsys_online_store_circuit{state="closed"} 1.0' in client.get("/metrics").text
