"""Output edges: the raw event lake, the dead-letter store and the checkpoint staging tables.

Lake files are idempotent: each (domain, date) group of a micro-batch is written to the partition
the nightly jobs read (``lake/events/domain=<d>/date=<day>/``) under a deterministic name
(``batch-<id>.parquet``; in the unbounded job ``stream-<window end>-p<pane>.parquet``), first to
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

from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.records import DEAD_LETTER_SOURCE, METRICS_NAMESPACE, FeatureUpdate, FreshnessSample, Rejected
from common.deadletter import DeadLetterWriter
from common.lake import write_events
from common.lake_schemas import EVENT_ARROW_SCHEMA, to_arrow
from common.paths import DataPaths
from common.schemas import Event


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


def _write_group(data_root: str, stream_events: Iterable[Any], name: str) -> int:
    events = [e.event for e in stream_events]
    write_lake_partition(DataPaths(Path(data_root)), events, name)
    Metrics.counter(METRICS_NAMESPACE, "lake_rows").inc(len(events))
    return len(events)


class WriteBatchPartition(beam.DoFn):
    """``((domain, date), events)`` -> one lake file named after the micro-batch (side input)."""

    def __init__(self, data_root: str) -> None:
        self.data_root = data_root

    def process(self, element: tuple[tuple[str, str], Iterable[Any]], batch: Batch) -> Iterator[int]:
        yield _write_group(self.data_root, element[1], batch.name)


class WriteWindowPartition(beam.DoFn):
    """``((domain, date), events)`` -> one lake file named after the window and pane (unbounded job)."""

    def __init__(self, data_root: str) -> None:
        self.data_root = data_root

    def process(
        self, element: tuple[tuple[str, str], Iterable[Any]], win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam
    ) -> Iterator[int]:
        name = f"stream-{win.end.to_utc_datetime():%Y%m%dT%H%M%S}-p{pane.index}"
        yield _write_group(self.data_root, element[1], name)


class WriteLake(beam.PTransform):
    """Unique ``StreamEvent``s -> lake partitions. In a micro-batch (``batch``: the batch side input)
    the whole batch is one group per partition; the unbounded job groups by ``window_seconds`` windows."""

    def __init__(self, data_root: str, batch: Any = None, window_seconds: int | None = None) -> None:
        super().__init__()
        self.data_root = data_root
        self.batch = batch
        self.window_seconds = window_seconds

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        if self.window_seconds is not None:
            events = events | "LakeWindows" >> beam.WindowInto(window.FixedWindows(self.window_seconds))
        return (
            events
            | "ByPartition" >> beam.Map(lambda e: (lake_key(e.event), e)).with_output_types(tuple[tuple[str, str], Any])
            | "GroupByPartition" >> beam.GroupByKey()
            | "WritePartition" >> (
                beam.ParDo(WriteWindowPartition(self.data_root)) if self.batch is None
                else beam.ParDo(WriteBatchPartition(self.data_root), self.batch)
            )
        )


class WriteDeadLetters(beam.DoFn):
    """``Rejected`` -> appended to the dead-letter store once per bundle (already counted upstream),
    in a file named after the micro-batch (side input) or, in the unbounded job, the worker."""

    def __init__(self, data_root: str) -> None:
        self.data_root = data_root
        self._rejected: list[Rejected] = []
        self._name = ""

    def start_bundle(self) -> None:
        self._rejected = []
        self._name = f"{socket.gethostname()}-{os.getpid()}"

    def process(self, rejected: Rejected, batch: Batch | None = None) -> None:
        if batch is not None:
            self._name = batch.name
        self._rejected.append(rejected)

    def finish_bundle(self) -> None:
        writer = DeadLetterWriter(DataPaths(Path(self.data_root)), DEAD_LETTER_SOURCE, name=self._name)
        writer.write_many([(r.raw, r.rejection) for r in self._rejected])
        self._rejected = []


def dead_letter_files(paths: DataPaths, name: str) -> list[Path]:
    return sorted(paths.dead_letter(DEAD_LETTER_SOURCE).glob(f"date=*/{name}.jsonl"))


class _Stage(beam.DoFn, abc.ABC):
    """Buffers a bundle and writes it to the checkpoint store's staging tables for the batch (side input)."""

    def __init__(self, checkpoint_db: str) -> None:
        self.checkpoint_db = checkpoint_db
        self._buffer: list[Any] = []
        self.batch = 0

    def setup(self) -> None:
        self.store = CheckpointStore(self.checkpoint_db)

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Any, batch: Batch) -> None:
        self.batch = batch.id
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
