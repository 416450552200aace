"""The dead-letter store: every rejected record, with its reason, as JSONL under ``dead_letter/``.

One line per rejected record::

    {"source": "...", "rejected_at": "...", "reason": {"code", "field", "detail"}, "record": <raw>}

``record`` holds the raw input as received (an object, or the raw text of a line that was not JSON),
so nothing is lost and a fixed record can be replayed. Writing a line never fails on what the record
holds: text JSON cannot carry is escaped, nesting beyond :data:`MAX_DEPTH` and records beyond
:data:`MAX_RECORD_BYTES` are cut with a ``[truncated ...]`` marker (the reason is always kept).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.appends import append_lines
from common.paths import DataPaths
from common.schemas import Rejection, safe_text, shown

log = logging.getLogger(__name__)
MAX_DEPTH = 64  # nesting kept in a dead-lettered record; deeper parts are replaced by a marker
MAX_RECORD_BYTES = 1 << 20  # a bigger record is kept as the start of its text, marked truncated
KEPT_CHARS = 4096  # of a record too big (or impossible) to write, the start of its text is kept
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY


def _jsonable(raw: Any) -> Any:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return raw


def _as_text(value: Any) -> str:
    return shown(value, MAX_RECORD_BYTES)


def _writable(raw: Any, depth: int = 0) -> Any:
    """``raw`` with what JSON (or orjson) cannot hold made writable: lone surrogates escaped, integers
    beyond 64 bits (which JSON readers turn into lossy floats) as their exact decimal text, keys as
    text, nesting beyond :data:`MAX_DEPTH` levels replaced by a ``[truncated ...]`` marker."""
    if isinstance(raw, str):
        return safe_text(raw, MAX_RECORD_BYTES)
    if isinstance(raw, bool) or raw is None or isinstance(raw, float):
        return raw
    if isinstance(raw, int):
        return raw if -(2**63) <= raw < 2**64 else _as_text(raw)
    if isinstance(raw, dict | list | tuple) and depth >= MAX_DEPTH:
        return f"[truncated: nested deeper than {MAX_DEPTH} levels]"
    if isinstance(raw, dict):
        return {safe_text(str(key), MAX_RECORD_BYTES): _writable(value, depth + 1) for key, value in raw.items()}
    if isinstance(raw, list | tuple):
        return [_writable(value, depth + 1) for value in raw]
    return raw  # datetimes, numpy values: orjson (or its ``default``) writes them


def _line(entry: dict[str, Any]) -> bytes:
    """One JSONL line; never raises. A record orjson refuses is made writable (:func:`_writable`); one
    that still cannot be written, or is absurdly big, is kept as the start of its text, marked truncated
    -- the fact it was rejected, and why, is never lost."""
    try:
        line = orjson.dumps(entry, option=_OPTIONS, default=_as_text)
    except (TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        try:
            line = orjson.dumps({**entry, "record": _writable(entry["record"])}, option=_OPTIONS, default=_as_text)
        except (TypeError, RecursionError):
            line = b""
    if not line or len(line) > MAX_RECORD_BYTES:
        text = _as_text(entry["record"])
        kept = {**entry, "record": f"[truncated: {len(text)} chars of text, first {KEPT_CHARS} kept] {text[:KEPT_CHARS]}"}
        line = orjson.dumps(_writable(kept), option=_OPTIONS, default=_as_text)
    return line + b"\n"


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
            append_lines(path, lines)
            for _, rej in rejected:
                self.counts[rej.code] += 1


def read_dead_letters(paths: DataPaths, source: str | None = None) -> Iterator[dict[str, Any]]:
    """Every dead-lettered entry of ``source`` (default: all). A line that does not parse is the torn
    fragment of an append that failed (its write was refused, nothing of it acknowledged): skipped."""
    root = paths.root / "dead_letter" if source is None else paths.dead_letter(source)
    for file in sorted(root.rglob("*.jsonl")):
        with file.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.warning("%s: skipped a torn line (%d bytes)", file, len(line))
                    continue
                yield entry
