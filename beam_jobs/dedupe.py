"""Deduplicate events by ``event_id``; every duplicate is dead-lettered with its reason and counted.

- ``DedupeBatch`` (micro-batch job): group the batch by ``event_id``, keep the first occurrence (by
  file and offset) unless the checkpoint store's ``seen`` table already holds the id (processed by
  an earlier batch, before or after a restart); the kept ids are staged and become ``seen`` in the
  batch's commit.
- ``DedupeFn`` (unbounded job on Flink/Dataflow): a stateful DoFn keyed by ``event_id`` whose flag
  lives in runner-checkpointed state and expires after ``retention_seconds`` (processing time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.parse import REJECTED, count_rejection
from beam_jobs.records import METRICS_NAMESPACE, Rejected, StreamEvent
from common.schemas import Reason, Rejection

UNIQUE = "unique"


def duplicate(event: StreamEvent, detail: str) -> beam.pvalue.TaggedOutput:
    count_rejection(Reason.DUPLICATE_EVENT_ID)
    Metrics.counter(METRICS_NAMESPACE, "duplicates").inc()
    record = event.event.model_dump(mode="json", exclude_none=True)
    return beam.pvalue.TaggedOutput(REJECTED, Rejected(record, Rejection(Reason.DUPLICATE_EVENT_ID, "event_id", detail)))


class DropDuplicates(beam.DoFn):
    """``(event_id, occurrences)`` -> the first occurrence unless already seen; the rest rejected."""

    def __init__(self, checkpoint_db: str) -> None:
        self.checkpoint_db = checkpoint_db
        self._kept: list[str] = []
        self._batch = 0

    def setup(self) -> None:
        self.store = CheckpointStore(self.checkpoint_db)

    def start_bundle(self) -> None:
        self._kept = []

    def process(self, element: tuple[str, Iterable[StreamEvent]], batch: Batch) -> Iterator[Any]:
        self._batch = batch.id
        event_id, occurrences = element
        ordered = sorted(occurrences, key=lambda e: (e.source, e.offset))
        first = ordered[0]
        if self.store.is_seen(event_id):
            for event in ordered:
                yield duplicate(event, f"event {event_id!r} was already processed by an earlier batch")
            return
        self._kept.append(event_id)
        yield first
        for event in ordered[1:]:
            yield duplicate(event, f"event {event_id!r} repeats {first.source} at byte {first.offset}")

    def finish_bundle(self) -> None:
        self.store.stage_seen(self._batch, self._kept)
        self._kept = []

    def teardown(self) -> None:
        self.store.close()


class DedupeBatch(beam.PTransform):
    """``StreamEvent``s -> unique ones on ``UNIQUE``, duplicates (``Rejected``) on ``REJECTED``;
    ``batch`` is the micro-batch side input (``AsSingleton`` of a ``Batch``)."""

    def __init__(self, checkpoint_db: str, batch: Any) -> None:
        super().__init__()
        self.checkpoint_db = checkpoint_db
        self.batch = batch

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            events
            | "ById" >> beam.Map(lambda e: (e.event_id, e)).with_output_types(tuple[str, Any])
            | "GroupById" >> beam.GroupByKey()
            | "DropDuplicates" >> beam.ParDo(DropDuplicates(self.checkpoint_db), self.batch).with_outputs(
                REJECTED, main=UNIQUE
            )
        )


class DedupeFn(beam.DoFn):
    """``(event_id, StreamEvent)`` -> the event the first time its id is seen within the retention."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.REAL_TIME)

    def __init__(self, retention_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.retention_seconds = retention_seconds
        self.clock = clock

    def process(
        self,
        element: tuple[str, StreamEvent],
        seen=beam.DoFn.StateParam(SEEN),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[Any]:
        event_id, event = element
        if seen.read():
            yield duplicate(event, f"event {event_id!r} was already processed")
            return
        seen.write(True)
        expiry.set(Timestamp.of(self.clock() + self.retention_seconds))
        yield event

    @on_timer(EXPIRY)
    def expire(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()
