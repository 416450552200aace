"""The incoming event stream: append-only JSONL files the streaming job tails.

Each serving process appends to its own file per domain under ``incoming/<domain>/``, named
``<UTC start time>-<host>-<pid>-<seq>.jsonl`` so names sort chronologically. Every append is whole
lines in one ``write`` followed by ``fsync`` (a reader never sees half a line once the call
returns). A file is rotated -- the next append opens a new one -- when it reaches
``rotate_bytes`` or is older than ``rotate_seconds``; a rotated file is never written again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from common.paths import DataPaths


class StreamFile:
    """The current append file of one domain (thread-safe)."""

    def __init__(
        self, directory: Path, rotate_bytes: int, rotate_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0
        self._seq = 0
        self._prefix = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"

    def _open(self) -> tuple[int, Path]:
        self._close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._opened_at = self._clock()
        stamp = datetime.fromtimestamp(self._opened_at, UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._seq += 1
        self._path = self.directory / f"{stamp}-{self._prefix}-{self._seq:06d}.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        return self._fd, self._path

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _current(self) -> tuple[int, Path]:
        """The open file, after rotating it if it is full or too old."""
        too_old = self._clock() - self._opened_at >= self.rotate_seconds
        if self._fd is None or self._path is None or self._size >= self.rotate_bytes or too_old:
            return self._open()
        return self._fd, self._path

    def append(self, lines: Sequence[bytes]) -> Path:
        """Append JSON lines (without their newline); returns the file written. Durable on return."""
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            fd, path = self._current()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            self._size += len(data)
            return path

    def close(self) -> None:
        with self._lock:
            self._close()


class IncomingStreams:
    """One :class:`StreamFile` per domain under ``paths.incoming(domain)``."""

    def __init__(self, paths: DataPaths, rotate_bytes: int, rotate_seconds: float) -> None:
        self.paths = paths
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._files: dict[str, StreamFile] = {}
        self._lock = threading.Lock()

    def for_domain(self, domain: str) -> StreamFile:
        with self._lock:
            if domain not in self._files:
                self._files[domain] = StreamFile(self.paths.incoming(domain), self.rotate_bytes, self.rotate_seconds)
            return self._files[domain]

    def append(self, domain: str, lines: Sequence[bytes]) -> Path:
        return self.for_domain(domain).append(lines)

    def close(self) -> None:
        with self._lock:
            for stream in self._files.values():
                stream.close()
