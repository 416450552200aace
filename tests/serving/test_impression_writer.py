"""Group-committed impression logging: the request only enqueues, one writer thread commits.

Unit tests drive :class:`GroupCommitWriter` over real stream files; a stalled disk is simulated by
holding the stream file's lock (what a slow ``fsync`` does to the writer), a failing disk by making
one append raise. The app tests serve the real world release: requests answer while the writer is
stalled, drops are counted, and a clean stop writes every accepted slate before the app exits.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.online_features import OnlineFeatures
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from serving.app import create_app
from serving.settings import Budgets, ServingSettings, load_settings
from serving.stream import (
    NOT_RUNNING,
    QUEUE_FULL,
    RENDER_ERROR,
    WRITE_ERROR,
    GroupCommitWriter,
    IncomingStreams,
    Pending,
)

LOST_REASONS = (QUEUE_FULL, NOT_RUNNING, RENDER_ERROR, WRITE_ERROR)

KEY = "test-key-0123456789"
BUDGETS = Budgets(total=5000, user_features=1000, retrieval=2000, item_features=1000, ranking=1000)


class Tally:
    """The writer's metrics hooks, recorded: lines written / lost per domain."""

    def __init__(self) -> None:
        self.written: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def on_written(self, domain: str, n: int) -> None:
        self.written[domain] += n

    def on_lost(self, domain: str, n: int, reason: str) -> None:
        self.lost[domain] += n
        self.reasons[reason] += n


def _batch(domain: str, tag: str, lines: int = 3) -> Pending:
    return Pending(domain, lines, lambda: [orjson.dumps({"tag": tag, "slot": i}) for i in range(lines)])


def _lines(paths: DataPaths, domain: str) -> list[dict]:
    return [orjson.loads(line) for f in sorted(paths.incoming(domain).glob("*.jsonl"))
            for line in f.read_bytes().splitlines()]


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[IncomingStreams]:
    made = IncomingStreams(DataPaths(tmp_path), rotate_bytes=1 << 20, rotate_seconds=3600)
    yield made
    made.close()


@contextmanager
def stalled(streams: IncomingStreams, domain: str) -> Iterator[None]:
    """The domain's stream file blocks every append (as a disk whose fsync hangs) until the block ends."""
    lock = streams.for_domain(domain)._lock
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class Call:
    """``fn()`` run in a thread, with what a test needs to say whether it is blocked: :attr:`returned`
    is set when ``fn`` returned (the thread has surely started before the constructor returns)."""

    BLOCKED_S = 0.3  # how long a call must stay unreturned to count as waiting

    def __init__(self, fn: Callable[[], object]) -> None:
        started, self.returned, self.result = threading.Event(), threading.Event(), None

        def run() -> None:
            started.set()
            self.result = fn()
            self.returned.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def is_waiting(self) -> bool:
        return not self.returned.wait(self.BLOCKED_S)

    def finishes(self, timeout: float = 30.0) -> bool:
        return self.returned.wait(timeout)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Counts the real ``os.fsync`` calls per file descriptor (it still syncs)."""
    calls: Counter[int] = Counter()
    real = os.fsync

    def counting(fd: int) -> None:
        calls[fd] += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_everything_queued_is_committed_with_one_write_and_one_fsync(streams: IncomingStreams,
                                                                     fsyncs: Counter[int]) -> None:
    tally = Tally()
    writer = GroupCommitWriter(streams, tally.on_written, tally.on_lost, capacity=1000)
    writer.start()
    with stalled(streams, "retail"):
        writer.submit(_batch("retail", "first"))
        deadline = time.monotonic() + 5
        while writer.queued and time.monotonic() < deadline:  # the writer took "first" and waits on the disk
            time.sleep(0.001)
        for i in range(200):
            assert writer.submit(_batch("retail", f"b{i}"))
        assert writer.queued == 200  # the callers did not wait for the disk
    assert writer.flush(timeout=10)
    assert sum(fsyncs.values()) == 2  # "first", then the 200 queued behind it in one commit
    tags = [line["tag"] for line in _lines(streams.paths, "retail")]
    assert tags == [t for t in ["first", *(f"b{i}" for i in range(200))] for _ in range(3)]  # in submission order
    assert tally.written == {"retail": 603} and not tally.lost
    assert writer.close()


def test_a_stalled_disk_fills_the_bounded_queue_and_drops_are_counted(streams: IncomingStreams) -> None:
    tally = Tally()
    writer = GroupCommitWriter(streams, tally.on_written, tally.on_lost, capacity=5)
    writer.start()
    with stalled(streams, "retail"):
        outcomes = [writer.submit(_batch("retail", f"b{i}", lines=2)) for i in range(20)]
        assert writer.queued <= 5
    assert writer.flush(timeout=10) and writer.close()
    accepted = sum(outcomes)
    assert 5 <= accepted <= 6 and not all(outcomes)  # 5 queued (+1 the writer may have taken already)
    assert tally.lost == {"retail": 2 * (20 - accepted)} and set(tally.reasons) == {"queue_full"}
    assert tally.written == {"retail": 2 * accepted} == {"retail": len(_lines(streams.paths, "retail"))}


def test_failures_are_counted_and_the_writer_goes_on(streams: IncomingStreams, monkeypatch: pytest.MonkeyPatch) -> None:
    tally = Tally()
    writer = GroupCommitWriter(streams, tally.on_written, tally.on_lost)
    real_append = streams.append
    failures = iter([True])

    def failing_once(domain: str, lines: list[bytes]) -> Path:  # fault injection: the disk is full, once
        if domain == "banking" and next(failures, False):
            raise OSError(28, "No space left on device")
        return real_append(domain, lines)

    monkeypatch.setattr(streams, "append", failing_once)

    def broken() -> list[bytes]:
        raise ValueError("an impression that cannot be serialised")

    writer.start()
    writer.submit(Pending("retail", 4, broken))
    writer.submit(_batch("retail", "ok"))
    assert writer.flush(timeout=10)
    writer.submit(_batch("banking", "lost"))
    assert writer.flush(timeout=10)
    writer.submit(_batch("banking", "after"))
    assert writer.flush(timeout=10) and writer.close()
    assert tally.lost == {"retail": 4, "banking": 3}
    assert tally.reasons == {"render_error": 4, "write_error": 3}
    assert tally.written == {"retail": 3, "banking": 3}
    assert {line["tag"] for line in _lines(streams.paths, "banking")} == {"after"}


def test_the_queue_depth_gauge_ends_at_the_depth_the_queue_has(streams: IncomingStreams) -> None:
    """A submitter's depth must not land after the writer's 0 for the same queue: the submitter here
    is slow to report (held up until the writer took the queue, or for 0.5 s at most)."""
    writer_took = threading.Event()
    reported: list[int] = []

    def on_queue(depth: int) -> None:
        if depth == 0:
            writer_took.set()
        elif threading.current_thread() is threading.main_thread():
            writer_took.wait(0.5)
        reported.append(depth)

    writer = GroupCommitWriter(streams, Tally().on_written, Tally().on_lost, on_queue=on_queue)
    writer.start()
    assert writer.submit(_batch("retail", "only"))
    assert writer.flush(timeout=10) and writer.close()
    assert writer.queued == 0 and reported == [1, 0]


def test_close_writes_everything_accepted_and_refuses_what_comes_after(streams: IncomingStreams) -> None:
    tally = Tally()
    writer = GroupCommitWriter(streams, tally.on_written, tally.on_lost)
    assert not writer.submit(_batch("retail", "before start"))  # not started: dropped, counted
    writer.start()
    with stalled(streams, "retail"):
        for i in range(50):
            writer.submit(_batch("retail", f"b{i}"))
        closing = Call(writer.close)
        assert closing.is_waiting() and not _lines(streams.paths, "retail")  # close waits for the stalled writer ...
        assert not writer.submit(_batch("retail", "after close"))
    assert closing.finishes() and closing.result  # ... and returns once everything accepted is on disk
    assert len(_lines(streams.paths, "retail")) == 150 and tally.written == {"retail": 150}
    assert tally.lost == {"retail": 6} and tally.reasons == {"not_running": 6}  # "before start", "after close"
    writer.start()  # an app started again gets a new writer thread
    assert writer.submit(_batch("retail", "restarted")) and writer.flush(timeout=10) and writer.close()
    assert _lines(streams.paths, "retail")[-1]["tag"] == "restarted"


# ---------------------------------------------------------------------------------------------
# the app on the world's real release


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _settings(root: Path) -> ServingSettings:
    return load_settings(domains=["retail"]).model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts", "budgets_ms": BUDGETS})


def _published_app(settings: ServingSettings, publish: Callable[..., str], store: OnlineFeatures) -> FastAPI:
    """The app over ``settings`` with release ``v1`` published under its artifact root."""
    publish(ArtifactRegistry(settings.artifacts_root), "v1")
    return create_app(settings, features=store)


def _recommend(client: TestClient, user: str) -> dict:
    response = client.post("/v1/recommendations", json={"user_id": user, "domain": "retail", "k": 5})
    assert response.status_code == 200, response.text
    return response.json()


def test_requests_do_not_wait_for_a_stalled_disk_and_a_clean_stop_loses_nothing(
    publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path, metric_delta: type
) -> None:
    settings = _settings(tmp_path)
    app = _published_app(settings, publish, store)
    services = app.state.services
    delta = metric_delta(services.metrics)
    client = TestClient(app).__enter__()  # exited by hand below, from another thread
    stopped = False
    try:
        _recommend(client, "r_u01")  # the first request traces functions
        assert services.impressions.flush(timeout=10)
        with stalled(services.streams, "retail"):
            served = [_recommend(client, f"r_u{i:02d}") for i in range(12)]  # answered while nothing is written
            assert delta("recsys_impressions_logged_total", domain="retail") == 5  # only the first request's
            stop = Call(lambda: client.__exit__(None, None, None))  # the app stops while the disk is stalled ...
            assert stop.is_waiting()  # ... and waits for the writer, which has written nothing since
            assert len(_lines(DataPaths(settings.data_root), "retail")) == 5
        stopped = stop.finishes()  # the disk recovered: the writer drains the queue and the app stops
        assert stopped
    finally:
        if not stopped:
            client.__exit__(None, None, None)
    written = [e for e in _lines(DataPaths(settings.data_root), "retail") if e["event_type"] == "impression"]
    assert len(written) == 5 + 12 * 5
    assert {e["request_id"] for e in written} >= {s["request_id"] for s in served}
    assert delta("recsys_impressions_logged_total", domain="retail") == 65
    assert not any(delta("recsys_impressions_lost_total", domain="retail", reason=r) for r in LOST_REASONS)


def test_a_full_queue_drops_impressions_counted_but_never_the_request(
    publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path, metric_delta: type
) -> None:
    settings = _settings(tmp_path)
    app = _published_app(settings, publish, store)
    services = app.state.services
    delta = metric_delta(services.metrics)
    with TestClient(app) as client:
        services.impressions.capacity = 2
        with stalled(services.streams, "retail"):
            for i in range(8):
                _recommend(client, f"r_u{i:02d}")
        assert services.impressions.flush(timeout=10)
        logged = delta("recsys_impressions_logged_total", domain="retail")
        lost = delta("recsys_impressions_lost_total", domain="retail", reason="queue_full")
        assert logged + lost == 8 * 5 and lost >= 4 * 5  # 2 queued + 1 or 2 the writer took before stalling
        assert len(_lines(DataPaths(settings.data_root), "retail")) == logged


def test_events_posted_after_a_slate_reach_the_stream_after_its_impressions(
    publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path
) -> None:
    settings = _settings(tmp_path).model_copy(update={"api_key": KEY})
    app = _published_app(settings, publish, store)
    writer = app.state.services.impressions
    slow = threading.Event()
    with TestClient(app) as client:
        writer.submit(Pending("retail", 0, lambda: [] if slow.wait(10) else []))  # fault: the writer is slow
        slate = _recommend(client, "r_u02")
        click = {"event_id": "click-1", "domain": "retail", "user_id": "r_u02", "item_id": slate["items"][0]["item_id"],
                 "event_type": "click", "timestamp": datetime.now(UTC).isoformat(), "request_id": slate["request_id"],
                 "position": 1}
        post = Call(lambda: client.post("/v1/events", json={"events": [click]}, headers={"X-API-Key": KEY}).status_code)
        assert post.is_waiting()  # the click waits for the impressions of the slate it is about
        slow.set()
        assert post.finishes() and post.result == 200
    lines = _lines(DataPaths(settings.data_root), "retail")
    assert [e["event_type"] for e in lines] == ["impression"] * 5 + ["click"]
