"""The incoming event stream: append-only JSONL files the streaming job tails.

Each serving process appends to its own file per domain under ``incoming/<domain>/``, named
``<UTC start time>-<host>-<pid>-<seq>.jsonl`` so names sort chronologically. Every append is whole
lines in one ``write`` followed by ``fsync`` (a reader never sees half a line once the call
returns); an append that fails (a full disk) raises after cutting its partial bytes off again, or, if
even that fails, after rotating away from the damaged file -- the next line never glues onto them. A file is rotated -- the next append opens a new one -- when it reaches
``rotate_bytes`` or is older than ``rotate_seconds``; a rotated file is never written again.

Two ways in: :meth:`IncomingStreams.append` is durable on return (``POST /v1/events`` answers only
after its events are on disk), and :class:`GroupCommitWriter` takes batches that need not hold up
their caller (impressions of served slates): the caller only enqueues, and one writer thread appends
everything queued since its last commit per domain in one ``write`` + one ``fsync``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.appends import TornAppend, append_or_cut
from common.paths import DataPaths

log = logging.getLogger(__name__)


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
        """Append JSON lines (without their newline); returns the file written. Durable on return.

        Raises ``OSError`` if the lines are not durably written (a full disk, an I/O error); whatever
        part of them reached the file is cut off again first (:func:`common.appends.append_or_cut`),
        or, if that fails too, the file is sealed and rotated (:meth:`_seal`), so the next append starts
        on a line boundary and is never glued onto the bytes of one that failed."""
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            fd, path = self._current()
            try:
                append_or_cut(fd, data, self._size)
            except TornAppend:
                self._seal(fd, path)
                raise
            self._size += len(data)
            return path

    def _seal(self, fd: int, path: Path) -> None:
        """The partial bytes of a failed append could not be cut off: end them with a newline (if the
        disk still takes one) and rotate. Nothing is appended to this file again, so the fragment stays
        a line of its own (unterminated at worst, which the tailer reads as the last line of a settled
        file) that the streaming job dead-letters as malformed -- it was never acknowledged."""
        log.error("%s: the partial bytes of a failed append stay in the file; rotating to a new one", path)
        try:
            os.write(fd, b"\n")
        except OSError:
            log.error("%s: the fragment of a failed append stays unterminated at the end of the file", path)
        self._close()

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


@dataclass(frozen=True)
class Pending:
    """A batch of lines waiting for the writer. ``render`` runs on the writer thread (serialising the
    lines there keeps that work off the caller's path); ``count`` is how many lines it stands for, what
    is counted as lost if it is dropped or cannot be written."""

    domain: str
    count: int
    render: Callable[[], Sequence[bytes]]


Counted = Callable[[str, int], None]  # (domain, lines) -> None: a metrics hook
Lost = Callable[[str, int, str], None]  # (domain, lines, reason) -> None: a metrics hook
# why lines were lost (the ``reason`` of ``on_lost``)
QUEUE_FULL, NOT_RUNNING, RENDER_ERROR, WRITE_ERROR = "queue_full", "not_running", "render_error", "write_error"


class GroupCommitWriter:
    """One writer thread per process appending queued batches to :class:`IncomingStreams` (group commit).

    :meth:`submit` never blocks on disk: it puts the batch in a bounded in-memory queue, or drops it
    (counted through ``on_lost``) when the queue is full -- a disk that stalls fills the queue, and the
    requests keep their latency. The writer takes everything queued at once, renders it and appends
    it per domain with one ``write`` + one ``fsync`` (so the disk cost is per commit, not per batch),
    then reports ``on_written`` (or ``on_lost`` if rendering or the append failed). :meth:`close` stops
    taking batches, writes everything already accepted and joins the thread: a clean stop loses nothing.

    What a kill -9 loses: the batches in the queue (at most ``capacity``, in practice what was queued
    since the last commit, as the writer takes the whole queue at every commit) and the commit under
    way; nothing already appended, as every commit is fsynced. Those losses die with the process's
    counters, so they show up in the lake: clicks whose ``request_id`` has no impression there.
    """

    def __init__(self, streams: IncomingStreams, on_written: Counted, on_lost: Lost, capacity: int = 10_000,
                 name: str = "stream-writer", on_submitted: Counted | None = None,
                 on_queue: Callable[[int], None] | None = None) -> None:
        """``capacity``: batches queued at most (each of a few lines); beyond it new ones are dropped.
        ``on_submitted`` counts every batch offered to :meth:`submit` (queued or dropped), so that
        ``submitted - written - lost`` is what is in flight -- what a kill -9 would lose uncounted;
        ``on_queue`` gets the queue's length whenever it changes (a gauge set: it runs under the
        writer's lock, so it must be cheap)."""
        if capacity < 1:
            raise ValueError("the queue needs room for at least one batch")
        self.streams = streams
        self.capacity = capacity
        self.name = name
        self._on_written = on_written
        self._on_lost = on_lost
        self._on_submitted = on_submitted
        self._on_queue = on_queue
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here for batches
        self._progress = threading.Condition(self._lock)  # flush() waits here for commits
        self._queue: deque[Pending] = deque()
        self._accepted = 0  # batches queued since the start
        self._done = 0  # of them, written or lost by the writer
        self._open = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (again after :meth:`close`); until then :meth:`submit` drops batches."""
        with self._lock:
            if self._thread is not None:
                return
            self._open = True
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def submit(self, pending: Pending) -> bool:
        """Queue a batch; ``False`` (and counted as lost) when the queue is full or the writer is closed."""
        if self._on_submitted is not None:
            self._count(self._on_submitted, pending.domain, pending.count)
        with self._lock:
            accepted = self._open and len(self._queue) < self.capacity
            reason = QUEUE_FULL if self._open else NOT_RUNNING
            if accepted:
                self._queue.append(pending)
                self._accepted += 1
                self._work.notify()
                self._report_queue()
        if not accepted:
            self._count(self._on_lost, pending.domain, pending.count, reason)
        return accepted

    def _report_queue(self) -> None:
        """Hand the queue's length to ``on_queue``; called under the lock, so reports reach the gauge in
        the order the queue changed (a submitter's depth never lands after the writer's 0)."""
        if self._on_queue is not None:
            self._count(self._on_queue, len(self._queue))

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every batch accepted before this call is written (or counted lost); ``False`` on timeout."""
        with self._lock:
            target = self._accepted
            return self._progress.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop taking batches, write what was accepted and join the writer; ``False`` if it is still
        writing after ``timeout`` seconds (a stalled disk: what is left is not written)."""
        with self._lock:
            self._open = False
            thread, self._thread = self._thread, None
            self._work.notify_all()
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.error("%s: still writing after %s s at shutdown; %d batches not written", self.name, timeout,
                      self.queued)
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and self._open:
                    self._work.wait()
                if not self._queue:  # closed and drained
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._report_queue()
            try:
                self._commit(batch)
            finally:
                with self._lock:
                    self._done += len(batch)
                    self._progress.notify_all()

    def _commit(self, batch: Sequence[Pending]) -> None:
        """Everything taken from the queue at once: one append (one write + one fsync) per domain."""
        lines: dict[str, list[bytes]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        for pending in batch:
            try:
                rendered = pending.render()
            except Exception:  # one bad batch must not take the others down with it
                log.exception("%s: could not render a batch of %d lines for %s", self.name, pending.count,
                              pending.domain)
                self._count(self._on_lost, pending.domain, pending.count, RENDER_ERROR)
                continue
            lines[pending.domain].extend(rendered)
            counts[pending.domain] += len(rendered)
        for domain, domain_lines in lines.items():
            if not domain_lines:
                continue
            try:
                self.streams.append(domain, domain_lines)
            except Exception:  # a disk error: these lines are lost, counted; the writer goes on
                log.exception("%s: could not append %d lines to the %s stream", self.name, counts[domain], domain)
                self._count(self._on_lost, domain, counts[domain], WRITE_ERROR)
            else:
                self._count(self._on_written, domain, counts[domain])

    def _count(self, hook: Callable[..., None], *args: str | int) -> None:
        try:
            hook(*args)
        except Exception:  # a metrics hook failing must not stop the writer
            log.exception("%s: metrics hook failed", self.name)
