"""Output edges: the raw event lake, the dead-letter store and the checkpoint staging tables.

Lake files are idempotent: each (domain, date) group of a micro-batch is written to the partition
the nightly jobs read (``lake/events/domain=<d>/date=<day>/``) under a deterministic name
(``stream-<batch>.parquet``; in the unbounded job ``stream-<window end>-p<pane>.parquet``), first to
a temporary file then renamed into place, so a replay overwrites instead of duplicating and readers
never see half a file. Dead letters of a micro-batch go to ``dead_letter/streaming/date=*/<name>.jsonl``
(``name`` = the batch's, so a replay first deletes what the interrupted attempt wrote).
"""

from __future__ import annotations

import abc
import os
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from beam_jobs.checkpoint import CheckpointStore
from beam_jobs.records import DEAD_LETTER_SOURCE, METRICS_NAMESPACE, FeatureUpdate, FreshnessSample, Rejected
from common.deadletter import DeadLetterWriter
from common.lake import write_events
from common.paths import DataPaths
from common.schemas import EVENT_ARROW_SCHEMA, Event, to_arrow


def scratch_dir(paths: DataPaths) -> Path:
    """Temporary files of the streaming job (same file system as the lake, for atomic renames)."""
    return paths.root / "streaming" / "tmp"


def write_lake_partition(paths: DataPaths, events: list[Event], basename: str) -> Path:
    """Write events of ONE (domain, date) to ``<partition>/<basename>.parquet`` atomically."""
    ordered = sorted(events, key=lambda e: (e.timestamp, e.event_id))
    tmp_root = scratch_dir(paths) / f"{basename}-{uuid.uuid4().hex}"
    try:
        write_events(to_arrow(ordered, EVENT_ARROW_SCHEMA), DataPaths(tmp_root), basename=basename + "-{i}")
        (written,) = list((tmp_root / "lake" / "events").glob("domain=*/date=*/*.parquet"))
        final = paths.events / written.parent.parent.name / written.parent.name / f"{basename}.parquet"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written, final)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return final


def lake_key(event: Event) -> tuple[str, str]:
    return event.domain, event.timestamp.strftime("%Y-%m-%d")


class WritePartition(beam.DoFn):
    """``((domain, date), events)`` -> one lake file; ``basename`` fixed (micro-batch) or from the
    window and pane (unbounded job)."""

    def __init__(self, data_root: str, basename: str | None = None) -> None:
        self.data_root = data_root
        self.basename = basename

    def process(
        self,
        element: tuple[tuple[str, str], Iterable[Any]],
        win=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
    ) -> Iterator[int]:
        _, stream_events = element
        events = [e.event for e in stream_events]
        name = self.basename
        if name is None:
            name = f"stream-{win.end.to_utc_datetime():%Y%m%dT%H%M%S}-p{pane.index}"
        write_lake_partition(DataPaths(Path(self.data_root)), events, name)
        Metrics.counter(METRICS_NAMESPACE, "lake_rows").inc(len(events))
        yield len(events)


class WriteLake(beam.PTransform):
    """Unique ``StreamEvent``s -> lake partitions. ``window_seconds`` (unbounded job) groups events into
    fixed processing windows first; without it the whole (bounded) batch is one group per partition."""

    def __init__(self, data_root: str, basename: str | None = None, window_seconds: int | None = None) -> None:
        super().__init__()
        self.data_root = data_root
        self.basename = basename
        self.window_seconds = window_seconds

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        if self.window_seconds is not None:
            events = events | "LakeWindows" >> beam.WindowInto(window.FixedWindows(self.window_seconds))
        return (
            events
            | "ByPartition" >> beam.Map(lambda e: (lake_key(e.event), e)).with_output_types(tuple[tuple[str, str], Any])
            | "GroupByPartition" >> beam.GroupByKey()
            | "WritePartition" >> beam.ParDo(WritePartition(self.data_root, self.basename))
        )


class WriteDeadLetters(beam.DoFn):
    """``Rejected`` -> appended to the dead-letter store once per bundle (already counted upstream)."""

    def __init__(self, data_root: str, name: str | None = None) -> None:
        self.data_root = data_root
        self.name = name
        self._rejected: list[Rejected] = []

    def setup(self) -> None:
        name = self.name or f"{socket.gethostname()}-{os.getpid()}"
        self.writer = DeadLetterWriter(DataPaths(Path(self.data_root)), DEAD_LETTER_SOURCE, name=name)

    def start_bundle(self) -> None:
        self._rejected = []

    def process(self, rejected: Rejected) -> None:
        self._rejected.append(rejected)

    def finish_bundle(self) -> None:
        self.writer.write_many([(r.raw, r.rejection) for r in self._rejected])
        self._rejected = []


def dead_letter_files(paths: DataPaths, name: str) -> list[Path]:
    return sorted(paths.dead_letter(DEAD_LETTER_SOURCE).glob(f"date=*/{name}.jsonl"))


class _Stage(beam.DoFn, abc.ABC):
    """Buffers a bundle and writes it to the checkpoint store's staging tables."""

    def __init__(self, checkpoint_db: str, batch: int) -> None:
        self.checkpoint_db = checkpoint_db
        self.batch = batch
        self._buffer: list[Any] = []

    def setup(self) -> None:
        self.store = CheckpointStore(self.checkpoint_db)

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Any) -> None:
        self._buffer.append(element)

    def finish_bundle(self) -> None:
        self.write(self._buffer)
        self._buffer = []

    @abc.abstractmethod
    def write(self, elements: list[Any]) -> None:
        """Stage one bundle's elements."""

    def teardown(self) -> None:
        self.store.close()


class StageUpdates(_Stage):
    """``FeatureUpdate`` -> ``staged_state`` (committed into user/item state with the batch)."""

    def write(self, elements: list[FeatureUpdate]) -> None:
        self.store.stage_states(
            self.batch, [(u.view, u.entity_id, u.domain, u.expires_at, u.state) for u in elements]
        )


class StageFreshness(_Stage):
    """``FreshnessSample`` -> ``staged_freshness`` (read by the job for its metrics)."""

    def write(self, elements: list[FreshnessSample]) -> None:
        self.store.stage_freshness(self.batch, [(s.view, s.seconds) for s in elements])
