"""The nginx front of ``recsys serving serve`` (issue 16: the excess answered 503 in milliseconds).

Everything is real: ``python -m cli serving serve --front nginx`` as a process, its uvicorn worker
serving the small world's trained release, nginx from the machine (``make setup`` installs it). The
fault: the one worker is frozen with SIGSTOP while a request holds its only in-flight slot (admission
1), so the next request can only be refused by nginx -- at once, with the service's JSON error and
``Retry-After``, counted in ``recsys_proxy_shed_total``. Then the worker is killed with -9: the front
answers 503 while the supervisor restarts it, and serves again once it is back. SIGTERM stops the
service, nginx included, with exit code 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from common.paths import REPO_ROOT
from common.polling import wait_until
from common.registry import ArtifactRegistry
from loop.service import free_port, write_variant
from serving.front import find_nginx

KEY = "front-test-key-0123456789"
ROUTE = "/v1/recommendations"
BODY = {"user_id": "r_u03", "domain": "retail", "k": 5}
START_S = 90.0  # a worker loads TensorFlow and the release on a busy 2-core CI box


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _workers(service: subprocess.Popen) -> list[psutil.Process]:
    return [c for c in psutil.Process(service.pid).children() if "uvicorn" in " ".join(c.cmdline())]


def _nginx(service: subprocess.Popen) -> psutil.Process:
    (nginx,) = [c for c in psutil.Process(service.pid).children() if "nginx" in c.name()]
    return nginx


@pytest.fixture
def fronted(world, publish, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    """The service behind nginx with one worker admitting one recommendation at a time."""
    assert find_nginx() is not None, "nginx is not installed: `make setup` installs it"
    data_root = tmp_path / "data"
    shutil.copytree(world.store_paths.root, data_root)  # the worker appends impressions under its data root
    publish(ArtifactRegistry(tmp_path / "artifacts"), "v1")
    serving_file = write_variant(tmp_path / "serving.yaml", {}, {"admission": {"recommendations": 1}})
    port = free_port()
    env = {**os.environ, "RECSYS_DATA_DIR": str(data_root), "RECSYS_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "RECSYS_SERVING_FILE": str(serving_file), "RECSYS_API_KEY": KEY}
    service = subprocess.Popen([sys.executable, "-m", "cli", "serving", "serve", "--front", "nginx", "--workers", "1",
                                "--port", str(port), "--domains", "retail", "--log-level", "warning"],
                               cwd=REPO_ROOT, env=env, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            wait_until(lambda: _ready(client), START_S, "the service is ready")
            yield service, client
    finally:
        for worker in _workers(service) if service.poll() is None else []:
            worker.send_signal(signal.SIGCONT)
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()


def test_the_front_refuses_the_excess_at_once_and_survives_a_dead_worker(fronted) -> None:
    service, client = fronted
    assert client.post(ROUTE, json=BODY).status_code == 200
    (worker,) = _workers(service)

    worker.send_signal(signal.SIGSTOP)  # the one admitted request below will wait until SIGCONT
    held: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: held.append(client.post(ROUTE, json=BODY)))
    holder.start()
    time.sleep(1.0)  # nginx has forwarded it: the worker's one slot is taken
    started = time.monotonic()
    refused = client.post(ROUTE, json=BODY)
    took = time.monotonic() - started
    worker.send_signal(signal.SIGCONT)
    holder.join(timeout=30)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"].startswith("over capacity") and refused.json()["details"] == []
    assert took < 0.5, f"the front took {took * 1000:.0f} ms to refuse"
    assert held and held[0].status_code == 200  # the admitted request was served, not dropped

    def shed_counted() -> bool:  # nginx flushes its shed log within a second
        return 'recsys_proxy_shed_total{route="/v1/recommendations"} 1.0' in client.get("/metrics").text

    wait_until(shed_counted, 5.0, "the refusal counted in /metrics")

    too_large = client.post("/v1/events", content=b"x" * (2**20 + 1), headers={"X-API-Key": KEY,
                                                                                 "content-type": "application/json"})
    assert too_large.status_code == 413 and "larger than" in too_large.json()["error"]

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    down = client.get("/readyz")  # the supervisor restarts it after 1 s; loading takes longer
    assert down.status_code == 503 and "no serving worker" in down.json()["error"]
    wait_until(lambda: _ready(client), START_S, "the restarted worker is ready")
    assert client.post(ROUTE, json=BODY).status_code == 200
    assert [w.pid for w in _workers(service)] != [worker.pid]

    nginx = _nginx(service)
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=60) == 0
    assert not nginx.is_running(), "nginx outlived the service"


def test_asking_for_nginx_where_there_is_none_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import cli, front

    monkeypatch.setattr(front, "find_nginx", lambda: None)
    result = CliRunner().invoke(cli.app, ["serve", "--front", "nginx", "--domains", "retail"])
    assert result.exit_code == 2 and "nginx is not installed" in result.output
