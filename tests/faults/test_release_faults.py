"""A release that fails to load never takes a domain down (issue 16, item 7).

Faults: a ``CURRENT`` pointer holding garbage, a promoted release whose files are damaged after the
promote, a release refused because of a passing I/O error, a release promoted by hand that serving
cannot load, and a ``HISTORY`` whose last line a crash tore. Everything else is real: the serving
world's trained models, the registry on disk, the Feast SQLite store, the app under TestClient.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from common.errors import EXIT_DATA_ERROR
from common.online_features import OnlineFeatures
from common.registry import CURRENT, HISTORY, ArtifactRegistry
from ingest.cli import app as ingest_app
from serving.app import create_app
from serving.metrics import ServingMetrics
from serving.release_loader import ReleaseLoader, _load_scorer
from serving.releases import ReleaseManager
from serving.settings import ServingSettings, load_settings


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _settings(root: Path) -> ServingSettings:
    return load_settings(domains=["retail"]).model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts", "release_poll_seconds": 0.05})


def _damage_ranker(registry: ArtifactRegistry, version: str) -> None:
    """Flip the ranker's last bytes on disk (same size): the release no longer verifies."""
    weights = next((registry.release_path("retail", version) / "ranker").rglob("*.npz"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)


def _garbage_pointer(registry: ArtifactRegistry, version: str) -> None:
    (registry.domain_dir("retail") / CURRENT).write_bytes(b"\x00\xff{garbage")


def _empty_pointer(registry: ArtifactRegistry, version: str) -> None:
    (registry.domain_dir("retail") / CURRENT).write_bytes(b"")


@pytest.mark.parametrize(("fault", "refused", "served"), [
    (_damage_ranker, "v2", "v1"),  # CURRENT's release does not verify: the one before it serves
    (_garbage_pointer, None, "v2"),  # nobody knows what is live: the newest release of HISTORY that loads
    (_empty_pointer, None, "v2"),
])
def test_a_refused_current_at_start_up_serves_the_last_known_good_release(
    fault: Callable[[ArtifactRegistry, str], None], refused: str | None, served: str, publish: Callable[..., str],
    store: OnlineFeatures, tmp_path: Path, metric_delta: type, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path)  # no lake data: without a last-known-good the domain would answer 503
    registry = ArtifactRegistry(settings.artifacts_root)
    publish(registry, "v1")
    publish(registry, "v2")
    fault(registry, "v2")
    app = create_app(settings, features=store)
    delta = metric_delta(app.state.services.metrics)
    with caplog.at_level(logging.ERROR, logger="serving.releases"), TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert (body["releases"], body["missing"], body["degraded"]) == ({"retail": served}, [], ["retail"])
        assert body["refused"]["retail"]["version"] == refused and body["refused"]["retail"]["retrying"] is False
        assert client.get("/healthz").json()["refused"] == body["refused"]
        answer = client.post("/v1/recommendations", json={"user_id": "r_u05", "domain": "retail", "k": 5})
        assert answer.status_code == 200 and answer.json()["release"] == served
    assert delta("recsys_release_refused", domain="retail") == 1
    errors = " | ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert f"refused release {refused or '(CURRENT unreadable)'}" in errors
    assert f"serving last-known-good release {served}" in errors
    if refused:
        assert "checksum mismatch" in body["refused"]["retail"]["reason"] and "checksum mismatch" in errors
    else:
        assert "CURRENT" in body["refused"]["retail"]["reason"]


class FailsFirst:
    """The real ranker loader, failing the first ``times`` calls with ``error`` (the injected fault)."""

    def __init__(self, error: Exception, times: int = 1) -> None:
        self.error, self.left, self.calls = error, times, 0

    def __call__(self, path: Path):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        return _load_scorer(path)


def _manager(world, registry: ArtifactRegistry, store: OnlineFeatures, scorer: FailsFirst) -> ReleaseManager:
    loader = ReleaseLoader(registry, world.store_paths, store, 60.0, load_scorer=scorer)
    return ReleaseManager(("retail",), registry, loader.load, ServingMetrics(), poll_seconds=0.05)


def _poll_until(manager: ReleaseManager, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout} s (refused: {manager.refusal_report()})"
        manager.poll_once()
        time.sleep(0.02)


def test_a_release_refused_for_a_transient_error_is_retried_and_goes_live(
    world, publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path,
) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1")
    scorer = FailsFirst(OSError(errno.EIO, "Input/output error"), times=2)
    manager = _manager(world, registry, store, scorer)
    assert manager.poll_once() == {"retail": "refused"} and manager.versions() == {}
    _poll_until(manager, lambda: manager.versions() == {"retail": "v1"})
    assert scorer.calls == 3 and manager.refusal_report() == {} and manager.degraded() == []
    assert manager.retry_delay(1) == 0.05 and manager.retry_delay(2) == 0.1 and manager.retry_delay(40) == 300.0


def test_a_deterministic_refusal_waits_for_a_new_current(
    world, publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path,
) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1")
    scorer = FailsFirst(ValueError("incompatible ranker export"))
    manager = _manager(world, registry, store, scorer)
    for _ in range(5):
        manager.poll_once()
    assert scorer.calls == 1  # the same files fail the same way: not loaded again
    publish(registry, "v2")  # a new CURRENT: tried at once
    _poll_until(manager, lambda: manager.versions() == {"retail": "v2"})
    assert scorer.calls == 2


@pytest.mark.parametrize(("error", "goes_live"), [
    (OSError(errno.EIO, "Input/output error"), True),  # transient: tried again after the backoff
    (ValueError("incompatible ranker export"), False),  # deterministic: once per CURRENT
])
def test_a_last_known_good_candidate_is_tried_again_only_after_a_transient_refusal(
    error: Exception, goes_live: bool, world, publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path,
) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1")
    publish(registry, "v2")
    _damage_ranker(registry, "v2")  # CURRENT's release is refused for good: v1 is the candidate
    scorer = FailsFirst(error)  # v2 fails its checksums before any model loads: every call is v1's
    manager = _manager(world, registry, store, scorer)
    assert manager.poll_once() == {"retail": "refused"} and manager.versions() == {}
    if goes_live:
        _poll_until(manager, lambda: manager.versions() == {"retail": "v1"}, timeout=10)
        assert scorer.calls == 2
    else:
        for _ in range(5):
            manager.poll_once()
            time.sleep(0.06)  # past the backoff a transient refusal would wait
        assert scorer.calls == 1 and manager.versions() == {}
    assert manager.refusal_report()["retail"]["version"] == "v2" and manager.degraded() == (["retail"] if goes_live else [])


def test_a_running_process_keeps_its_release_and_says_currents_is_refused(
    world, publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path, metric_delta: type,
) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1")
    manager = _manager(world, registry, store, FailsFirst(OSError(), times=0))
    delta = metric_delta(manager.metrics)
    assert manager.poll_once() == {"retail": "loaded"}
    publish(registry, "v2")
    _damage_ranker(registry, "v2")
    assert manager.poll_once() == {"retail": "refused"}
    assert manager.versions() == {"retail": "v1"} and manager.degraded() == ["retail"]
    assert manager.refusal_report()["retail"]["version"] == "v2"
    assert delta("recsys_release_refused", domain="retail") == 1
    registry.rollback("retail")  # CURRENT names the serving release again: nothing is refused
    assert manager.poll_once() == {} and manager.refusal_report() == {} and manager.degraded() == []
    assert delta("recsys_release_refused", domain="retail") == 0


def test_promote_refuses_a_release_serving_cannot_load_unless_forced(
    publish: Callable[..., str], data_paths, tmp_path: Path,
) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1", promote=False)
    publish(registry, "v2", promote=False, mutate=lambda staging: (staging / "ranker" / "fast").rename(
        staging / "ranker" / "elsewhere"))  # verifies, but serving finds no ranker
    runner = CliRunner()
    opts = ["--domain", "retail", "--artifacts-dir", str(registry.root)]  # data root: RECSYS_DATA_DIR (data_paths)

    good = runner.invoke(ingest_app, ["releases", "promote", "--version", "v1", *opts])
    assert good.exit_code == 0, good.output
    refused = runner.invoke(ingest_app, ["releases", "promote", "--version", "v2", *opts])
    assert refused.exit_code == EXIT_DATA_ERROR, refused.output
    assert "not promoted: serving refuses to load it" in refused.output and registry.current("retail") == "v1"
    forced = runner.invoke(ingest_app, ["releases", "promote", "--version", "v2", "--force", *opts,
                                        "--data-dir", str(data_paths.root)])
    assert forced.exit_code == 0, forced.output
    assert "WARNING: --force" in forced.output and registry.current("retail") == "v2"


def test_a_torn_history_line_breaks_neither_history_nor_rollback(tmp_path: Path) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    for version in ("v1", "v2", "v3"):
        (registry.stage("retail", version) / "model.bin").write_bytes(version.encode())
        registry.finalize("retail", version, training_window=None, metrics={})
        registry.promote("retail", version)
    history = registry.domain_dir("retail") / HISTORY
    with history.open("ab") as fh:  # a crash in the middle of appending a fourth entry
        fh.write(b'{"at":"2026-12-06T07:31:22.000000Z","action":"prom')

    assert [h["version"] for h in registry.history("retail")] == ["v1", "v2", "v3"]
    assert registry.live_stack("retail") == ["v1", "v2", "v3"]
    assert registry.rollback("retail") == "v2" and registry.current("retail") == "v2"
    assert [(h["action"], h["version"]) for h in registry.history("retail")][-1] == ("rollback", "v2")
    lines = history.read_bytes().splitlines()
    assert len(lines) == 5 and lines[3].endswith(b'"action":"prom') and history.read_bytes().endswith(b"\n")
    assert registry.rollback("retail") == "v1"
