"""The local source: tail the append-only JSONL files under ``incoming/<domain>/`` by byte ranges.

``plan_ranges`` turns the committed offsets into the next micro-batch: for every file with new
bytes, the range of complete lines after its offset (a partial last line waits for its newline,
unless the file has not changed for ``settle_seconds`` or the job drains with ``--once``).
Files are identified by content, not by inode: :func:`head_digest` of the file's first line (which
never changes in an append-only file) is kept with its offset. A file that shrank, or whose first
line differs (replaced, e.g. a regenerated simulator file -- even on the old file's inode, as file
systems reuse them), is read again from the start; the event-id dedupe turns lines already processed
into counted duplicates. A file whose size equals its recorded offset is not opened (one stat per
poll), so a replacement of exactly that size goes unnoticed until it grows. ``ReadRanges`` is the
pipeline's edge that reads the planned ranges back as ``SourceLine``s (and skips a range whose file
was replaced since it was planned).

Retention (:func:`expired_files`): a file read to its end and unchanged for the retention period
(far longer than serving's file rotation, so nobody appends to it any more) is removed, with its
offset -- its events are in the lake.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs.checkpoint import ByteRange, Offset
from beam_jobs.records import METRICS_NAMESPACE, SourceLine

LOG = logging.getLogger(__name__)
_READ_CHUNK = 1 << 20
HEAD_BYTES = 4096  # the identity of a file: its first line, or its first HEAD_BYTES bytes when longer


def head_digest(fh: BinaryIO) -> int:
    """A file's identity: a 56-bit digest of its first line (an SQLite integer), 0 for an empty file."""
    fh.seek(0)
    data = fh.read(HEAD_BYTES)
    if not data:
        return 0
    newline = data.find(b"\n")
    if newline >= 0:
        data = data[: newline + 1]
    return int.from_bytes(hashlib.blake2b(data, digest_size=7).digest(), "big") or 1


def _same_file(done: Offset, inode: int, head: int) -> bool:
    """Whether the file is the one ``done`` was recorded for (by content; by inode for older offsets)."""
    return done.head == head if done.head else done.inode == inode


def incoming_files(incoming_root: Path) -> list[tuple[str, Path]]:
    """``(domain/name, path)`` of every incoming file, in name order (serving's names sort by time)."""
    if not incoming_root.exists():
        return []
    return [(f"{p.parent.name}/{p.name}", p) for p in sorted(incoming_root.glob("*/*.jsonl"))]


def _complete_end(fh, start: int, size: int, budget: int, settled: bool) -> int:
    """End of the last complete line in ``[start, size)`` within ``budget`` bytes (at least one line)."""
    fh.seek(start)
    data = fh.read(min(size - start, max(budget, 1)))
    cut = data.rfind(b"\n")
    while cut < 0 and start + len(data) < size:  # a first line longer than the budget: read to its end
        more = fh.read(min(_READ_CHUNK, size - start - len(data)))
        newline = more.find(b"\n")
        if newline >= 0:
            cut = len(data) + newline
            more = more[: newline + 1]
        data += more
    end = start + cut + 1
    if start + len(data) == size and end < size and settled:
        end = size  # an unterminated last line of a file that stopped changing
    return end


def plan_ranges(
    incoming_root: Path,
    offsets: Mapping[str, Offset],
    max_bytes: int,
    settle_seconds: float | None,
) -> list[ByteRange]:
    """The byte ranges of the next micro-batch (at most ``max_bytes``, at least one line if any).

    ``settle_seconds=None`` takes every unterminated last line as complete (drain mode).
    """
    now = time.time()
    ranges: list[ByteRange] = []
    budget = max_bytes
    for source, path in incoming_files(incoming_root):
        if budget <= 0:
            break
        done = offsets.get(source)
        try:
            if done is not None and path.stat().st_size == done.position:
                continue  # nothing new (the common case: one stat, no read)
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                head = head_digest(fh)
                position = 0 if done is None else done.position
                if done is not None and (st.st_size < position or not _same_file(done, st.st_ino, head)):
                    LOG.warning("%s was replaced or truncated: reading it again from the start", source)
                    position = 0
                if st.st_size == position:
                    continue
                settled = settle_seconds is None or now - st.st_mtime >= settle_seconds
                end = _complete_end(fh, position, st.st_size, budget, settled)
        except FileNotFoundError:
            continue  # removed between listing and opening
        if end > position:
            ranges.append(ByteRange(source, st.st_ino, position, end, now, head))
            budget -= end - position
    return ranges


class ReadRanges(beam.DoFn):
    """``ByteRange`` -> one ``SourceLine`` per line (with its byte offset); the pipeline's input edge."""

    def __init__(self, incoming_root: str) -> None:
        self.incoming_root = incoming_root
        self.lost = Metrics.counter(METRICS_NAMESPACE, "ranges_unreadable")

    def process(self, rng: ByteRange) -> Iterator[SourceLine]:
        path = Path(self.incoming_root) / rng.source
        try:
            with path.open("rb") as fh:
                planned = Offset(rng.inode, rng.start, rng.head)
                if not _same_file(planned, os.fstat(fh.fileno()).st_ino, head_digest(fh)):
                    raise FileNotFoundError(f"{rng.source} was replaced since it was planned")
                fh.seek(rng.start)
                data = fh.read(rng.end - rng.start)
        except FileNotFoundError as err:
            LOG.error("cannot re-read %s [%d, %d): %s", rng.source, rng.start, rng.end, err)
            self.lost.inc()
            return
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        offset = rng.start
        for line in lines:
            yield SourceLine(rng.source, offset, line.rstrip(b"\r"), rng.seen_at)
            offset += len(line) + 1


def expired_files(incoming_root: Path, offsets: Mapping[str, Offset], older_than: float) -> list[tuple[str, Path]]:
    """``(source, path)`` of every incoming file read to its end and last modified before ``older_than``
    (epoch seconds): what the retention may remove. A file not (fully) read is never one of them."""
    expired = []
    for source, path in incoming_files(incoming_root):
        done = offsets.get(source)
        if done is None:
            continue
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_mtime < older_than and st.st_size == done.position and _same_file(done, st.st_ino,
                                                                                           head_digest(fh)):
                    expired.append((source, path))
        except FileNotFoundError:
            continue
    return expired
