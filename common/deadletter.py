"""The dead-letter store: every rejected record, with its reason, as JSONL under ``dead_letter/``.

One line per rejected record::

    {"source": "...", "rejected_at": "...", "reason": {"code", "field", "detail"}, "record": <raw>}

``record`` holds the raw input as received (an object, or the raw text of a line that was not JSON),
so nothing is lost and a fixed record can be replayed.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.paths import DataPaths
from common.schemas import Rejection


def _jsonable(raw: Any) -> Any:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return raw


def _big_ints_as_text(raw: Any) -> Any:
    """Integers beyond 64 bits (which JSON readers turn into lossy floats) as their exact decimal text."""
    if isinstance(raw, int) and not isinstance(raw, bool) and not -(2**63) <= raw < 2**64:
        return str(raw)
    if isinstance(raw, dict):
        return {key: _big_ints_as_text(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_big_ints_as_text(value) for value in raw]
    return raw


def _line(entry: dict[str, Any]) -> bytes:
    """One JSONL line; a record orjson refuses (integers beyond 64 bits) keeps those as text."""
    option = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY
    try:
        return orjson.dumps(entry, option=option, default=str) + b"\n"
    except TypeError:
        return orjson.dumps(_big_ints_as_text(entry), option=option, default=str) + b"\n"


class DeadLetterWriter:
    """Appends rejected records to ``dead_letter/<source>/date=<today>/<name>.jsonl`` (thread-safe)."""

    def __init__(self, paths: DataPaths, source: str, name: str | None = None) -> None:
        self.paths = paths
        self.source = source
        self.name = name or f"{os.getpid()}"
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def file_for(self, when: datetime) -> Path:
        return self.paths.dead_letter(self.source) / f"date={when:%Y-%m-%d}" / f"{self.name}.jsonl"

    def write(self, raw: Any, rejection: Rejection) -> None:
        self.write_many([(raw, rejection)])

    def write_many(self, rejected: list[tuple[Any, Rejection]]) -> None:
        if not rejected:
            return
        now = datetime.now(UTC)
        lines = b"".join(
            _line({"source": self.source, "rejected_at": now, "reason": rej.as_dict(), "record": _jsonable(raw)})
            for raw, rej in rejected
        )
        path = self.file_for(now)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
            for _, rej in rejected:
                self.counts[rej.code] += 1


def read_dead_letters(paths: DataPaths, source: str | None = None) -> Iterator[dict[str, Any]]:
    root = paths.root / "dead_letter" if source is None else paths.dead_letter(source)
    for file in sorted(root.rglob("*.jsonl")):
        with file.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield orjson.loads(line)
