"""The running service the simulated users talk to: a uvicorn subprocess on a free loopback port (or a
URL that is already up), and a small HTTP client for its two routes.

A serving *variant* is a copy of ``config/serving.yaml`` with some re-ranking rules overridden (for
example diversity and exploration switched off); the subprocess reads it through
``RECSYS_SERVING_FILE``, serving's own switch for its settings file.

Run as ``python -m loop.service --port P [--domains retail ...]``: what :class:`ServiceProcess` starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from common.paths import REPO_ROOT
from common.settings import env as platform_env

READY_TIMEOUT_S = 180.0
EVENT_BATCH = 1000  # serving's max_events_per_batch
RETRIES, MAX_RETRY_WAIT_S = 10, 5.0  # a shed request (503 + Retry-After) is sent again, this often at most


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, Mapping) else value
    return out


SIMULATED_TIME = {"trust_context_timestamp": True}  # impressions land in the simulated day's partition


def write_variant(path: Path, rule_overrides: Mapping[str, Any], serving_overrides: Mapping[str, Any] | None = None,
                  base: Path | None = None) -> Path:
    """A serving settings file: ``base`` (default ``config/serving.yaml``) with ``rule_overrides`` applied to
    every domain's re-ranking rules and ``serving_overrides`` to the ``serving:`` section."""
    raw = yaml.safe_load((base or REPO_ROOT / "config" / "serving.yaml").read_text())
    raw["domains"] = {name: _merge(rules, rule_overrides) for name, rules in raw.get("domains", {}).items()}
    raw["serving"] = _merge(raw.get("serving", {}), serving_overrides or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass
class Slate:
    """One served response, as the simulation keeps it."""

    request_id: str
    item_ids: list[str]
    propensities: list[float]
    reasons: list[list[str]]
    arm: str
    release: str
    path: str


class ServiceClient:
    """The two routes the simulated users call, over one keep-alive connection pool.

    A 503 with ``Retry-After`` (the service shed the request: over capacity, or it waited its whole
    budget, e.g. while a new release was being loaded) is sent again after that many seconds, as a
    well-behaved client does, at most :data:`RETRIES` times; ``retried`` counts them."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)
        self.retried = 0

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        for _ in range(RETRIES):
            response = self._http.post(path, json=body)
            retry_after = response.headers.get("Retry-After")
            if response.status_code != 503 or retry_after is None:
                break
            self.retried += 1
            time.sleep(min(float(retry_after), MAX_RETRY_WAIT_S))
        response.raise_for_status()
        return response

    def recommend(self, user_id: str, domain: str, k: int, device: str, session_id: str,
                  timestamp: str | None = None) -> Slate:
        """``timestamp`` (ISO-8601 UTC) is the simulated request time; a service started with
        ``trust_context_timestamp`` logs the slate's impressions at it, any other ignores it."""
        context = {"device": device, "session_id": session_id}
        if timestamp is not None:
            context["timestamp"] = timestamp
        body = self._post("/v1/recommendations", {
            "user_id": user_id, "domain": domain, "k": k, "context": context,
        }).json()
        items = body["items"]
        return Slate(body["request_id"], [i["item_id"] for i in items], [float(i["propensity"]) for i in items],
                     [list(i["reasons"]) for i in items], body["arm"], body["release"], body["path"])

    def post_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Post in batches of :data:`EVENT_BATCH`; returns accepted / rejected totals and rejection reasons."""
        totals: dict[str, int] = {"accepted": 0, "rejected": 0}
        for start in range(0, len(events), EVENT_BATCH):
            body = self._post("/v1/events", {"events": list(events[start:start + EVENT_BATCH])}).json()
            totals["accepted"] += body["accepted"]
            totals["rejected"] += body["rejected"]
            for reason, count in body["reasons"].items():
                totals[reason] = totals.get(reason, 0) + count
        return totals

    def releases(self) -> dict[str, str]:
        response = self._http.get("/healthz")
        response.raise_for_status()
        return dict(response.json()["releases"])

    def wait_for_releases(self, wanted: Mapping[str, str], timeout_s: float = 300.0) -> dict[str, str]:
        """Block until the service serves ``wanted`` (domain -> version), i.e. it hot-swapped them."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = self.releases()
            if all(live.get(d) == v for d, v in wanted.items()):
                return live
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service still serves {live}, expected {dict(wanted)}")
            time.sleep(0.25)


class ServiceProcess:
    """``python -m loop.service`` on a free loopback port, in its own process group."""

    def __init__(self, domains: Sequence[str], env: Mapping[str, str], serving_file: Path | None = None,
                 log_file: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, **env}
        if serving_file is not None:
            environment["RECSYS_SERVING_FILE"] = str(serving_file)
        command = [sys.executable, "-m", "loop.service", "--port", str(self.port)]
        for name in domains:
            command += ["--domain", name]
        self._log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.process.returncode} before it was ready")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the service at {self.url} was not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


@contextmanager
def running_service(domains: Sequence[str], env: Mapping[str, str], serving_file: Path | None = None,
                    url: str | None = None, log_file: Path | None = None) -> Iterator[ServiceClient]:
    """A client of the service at ``url``, or of a subprocess started (and stopped) here."""
    process = None if url else ServiceProcess(domains, env, serving_file, log_file)
    try:
        if process is not None:
            process.wait_ready()
        client = ServiceClient(url or process.url, env.get("RECSYS_API_KEY") or platform_env().api_key)
        try:
            yield client
        finally:
            client.close()
    finally:
        if process is not None:
            process.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the platform for the closed-loop simulation.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", action="append", default=None)
    args = parser.parse_args(argv)
    import uvicorn

    from serving.app import create_app
    from serving.settings import load_settings

    uvicorn.run(create_app(load_settings(domains=args.domain)), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
