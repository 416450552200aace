"""The local source: tail the append-only JSONL files under ``incoming/<domain>/`` by byte ranges.

``plan_ranges`` turns the committed offsets into the next micro-batch: for every file with new
bytes, the range of complete lines after its offset (a partial last line waits for its newline,
unless the file has not changed for ``settle_seconds`` or the job drains with ``--once``).
A file whose inode changed or that shrank (replaced, e.g. a regenerated simulator file) is read
again from the start; the event-id dedupe turns its old lines into counted duplicates.
``ReadRanges`` is the pipeline's edge that reads the planned ranges back as ``SourceLine``s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs.checkpoint import ByteRange
from beam_jobs.records import METRICS_NAMESPACE, SourceLine

LOG = logging.getLogger(__name__)
_READ_CHUNK = 1 << 20


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
    offsets: dict[str, tuple[int, int]],
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
        try:
            st = path.stat()
            inode, position = offsets.get(source, (st.st_ino, 0))
            if inode != st.st_ino or st.st_size < position:
                LOG.warning("%s was replaced or truncated: reading it again from the start", source)
                position = 0
            if st.st_size == position:
                continue
            settled = settle_seconds is None or now - st.st_mtime >= settle_seconds
            with path.open("rb") as fh:
                end = _complete_end(fh, position, st.st_size, budget, settled)
        except FileNotFoundError:
            continue  # removed between listing and reading
        if end > position:
            ranges.append(ByteRange(source, st.st_ino, position, end, now))
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
                if os.fstat(fh.fileno()).st_ino != rng.inode:
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
