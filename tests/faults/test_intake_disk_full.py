"""A disk that fills in the middle of an append: the partial bytes never glue onto the next event.

The fault: the first ``os.write`` to an incoming file writes 10 bytes, then raises ENOSPC. The
request whose append failed must answer 5xx (507: the client retries); every event acknowledged
afterwards must be a whole, parseable line of the stream -- before the fix it was glued onto the
partial bytes, and the streaming job dead-lettered it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from common.appends import TornAppend
from common.deadletter import DeadLetterWriter, read_dead_letters
from common.paths import DataPaths
from common.schemas import Reason, Rejection
from serving.app import create_app
from serving.settings import load_settings
from serving.stream import StreamFile

KEY = "test-key-0123456789"


class FullDisk:
    """``os.write`` wrapper: the next ``failures`` writes to files whose path holds ``under`` write 10
    bytes, then raise ENOSPC (what a filling disk does to a write that only partly fits)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failures: int = 1, under: str = "/incoming/") -> None:
        self.failures = failures
        self.under = under
        self._real = os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.failures > 0 and self.under in os.readlink(f"/proc/self/fd/{fd}"):
            self.failures -= 1
            self._real(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._real(fd, data)


def _no_truncate(fd: int, length: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def _event(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "domain": "retail", "user_id": "r_u1", "item_id": "r_i1", "event_type": "view",
            "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()}


def _lines(directory: Path) -> list[bytes]:
    return [line for f in sorted(directory.glob("*.jsonl")) for line in f.read_bytes().splitlines()]


@pytest.fixture
def client(data_paths: DataPaths) -> Iterator[TestClient]:
    settings = load_settings(api_key=KEY)
    settings = settings.model_copy(update={"stream": settings.stream.model_copy(
        update={"storage_retry_after_seconds": 7})})
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_failed_append_answers_507_and_the_next_event_is_a_whole_line(
    client: TestClient, data_paths: DataPaths, monkeypatch: pytest.MonkeyPatch, metric_delta: type
) -> None:
    delta = metric_delta(client.app.state.services.metrics)  # type: ignore[attr-defined]
    disk = FullDisk(monkeypatch)
    failed = client.post("/v1/events", json={"events": [_event("e1")]}, headers={"X-API-Key": KEY})
    assert failed.status_code == 507, failed.text
    assert "retry" in failed.json()["error"] and failed.headers["retry-after"] == "7"  # the setting's
    assert disk.failures == 0
    assert delta("recsys_event_storage_failures_total", reason="disk_full") == 1  # what EventIntakeCannotStore reads
    for event_id in ("e2", "e3"):
        ok = client.post("/v1/events", json={"events": [_event(event_id)]}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
    events = [orjson.loads(line) for line in _lines(data_paths.incoming("retail"))]  # every line parses
    assert [e["event_id"] for e in events] == ["e2", "e3"]
    assert delta("recsys_event_storage_failures_total", reason="disk_full") == 1


def test_an_io_error_answers_503_and_counts_as_io_error(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, metric_delta: type
) -> None:
    delta = metric_delta(client.app.state.services.metrics)  # type: ignore[attr-defined]

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    failed = client.post("/v1/events", json={"events": [_event("e1")]}, headers={"X-API-Key": KEY})
    assert failed.status_code == 503 and failed.headers["retry-after"] == "7", failed.text
    assert delta("recsys_event_storage_failures_total", reason="io_error") == 1
    assert delta("recsys_event_storage_failures_total", reason="disk_full") == 0


def test_when_the_partial_bytes_cannot_be_cut_the_stream_moves_to_a_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = StreamFile(tmp_path / "incoming" / "retail", rotate_bytes=1 << 20, rotate_seconds=3600)
    first = stream.append([b'{"n":0}'])
    FullDisk(monkeypatch)

    monkeypatch.setattr(os, "ftruncate", _no_truncate)  # the repair fails too
    with pytest.raises(OSError):
        stream.append([b'{"n":1,"pad":"' + b"x" * 40 + b'"}'])
    acknowledged = [stream.append([f'{{"n":{n}}}'.encode()]) for n in (2, 3)]
    stream.close()
    assert acknowledged[0] == acknowledged[1] != first  # rotated away from the damaged file
    assert [orjson.loads(line)["n"] for line in _lines(acknowledged[0].parent) if line != b'{"n":1,"pa'] == [0, 2, 3]
    assert first.read_bytes().endswith(b'{"n":1,"pa\n')  # the fragment is a line of its own, dead-lettered later


def test_a_failed_dead_letter_write_leaves_no_fragment(data_paths: DataPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = DeadLetterWriter(data_paths, "api")
    rejection = Rejection(Reason.NOT_AN_OBJECT, None, "an event must be a JSON object")
    writer.write("first", rejection)
    FullDisk(monkeypatch, under="/dead_letter/")
    with pytest.raises(OSError):
        writer.write("lost to the full disk", rejection)
    writer.write("after", rejection)
    assert [d["record"] for d in read_dead_letters(data_paths, "api")] == ["first", "after"]  # every line parses


def test_after_a_dead_letter_append_that_could_not_be_cut_the_next_starts_on_a_fresh_line(
    data_paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = DeadLetterWriter(data_paths, "api")
    rejection = Rejection(Reason.NOT_AN_OBJECT, None, "an event must be a JSON object")
    writer.write("first", rejection)
    FullDisk(monkeypatch, under="/dead_letter/")
    with monkeypatch.context() as failing:
        failing.setattr(os, "ftruncate", _no_truncate)  # the partial bytes stay in the file
        with pytest.raises(TornAppend):
            writer.write("lost to the full disk", rejection)
    writer.write("after", rejection)
    lines = _lines(writer.file_for(datetime.now(UTC)).parent)
    assert len(lines) == 3 and lines[1] == b'{"source":'  # the fragment: a line of its own
    assert [orjson.loads(line)["record"] for line in (lines[0], lines[2])] == ["first", "after"]
    assert [d["record"] for d in read_dead_letters(data_paths, "api")] == ["first", "after"]  # skips the fragment
