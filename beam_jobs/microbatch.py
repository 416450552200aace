"""The Beam pipeline of ONE micro-batch (bounded: the byte ranges planned for the batch).

::

    pending batch -> ranges -> ReadRanges -> ParseEvents -+-> rejected ------------------------+-> dead letters
                                         +-> DedupeBatch -+-> duplicates -----+
                                                          +-> unique -+-> WriteLake (lake partitions)
                         catalog (side input) ----------------------->+-> UserActivityBatch -+-> StageUpdates
                                                                      +-> ItemStatsBatch ----+-> PushRows -> StageFreshness

The batch (its id and byte ranges) is read from the checkpoint store's write-ahead record and is a
side input of every step that names or stages something. Every external write is idempotent for a
replay of the same batch, and everything the commit needs (state, seen ids, watermarks, freshness
samples) is staged in the checkpoint store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from beam_jobs.catalog import load_stream_catalog
from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.dedupe import UNIQUE, DedupeBatch
from beam_jobs.feast_io import FeastTarget, PushRows
from beam_jobs.features import FUTURE_TOLERANCE_SECONDS, ItemStatsBatch, UserActivityBatch
from beam_jobs.parse import REJECTED, ParseEvents
from beam_jobs.records import METRICS_NAMESPACE
from beam_jobs.sinks import StageFreshness, StageUpdates, WriteDeadLetters, WriteLake
from beam_jobs.tail import ReadRanges
from common.paths import DataPaths

EVENTS = "events"


@dataclass(frozen=True)
class BatchSettings:
    data_root: str
    checkpoint_db: str
    target: FeastTarget
    seed_users: bool = True  # seed a user's state from the row online the first time the job meets them
    push_rows: int = 1_000  # rows per Feast push call
    future_tolerance_seconds: float = FUTURE_TOLERANCE_SECONDS  # event time believed up to arrival + this

    @property
    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_root))


def pending_batch(_: bytes, checkpoint_db: str) -> Batch:
    """The batch the driver planned (written ahead in the checkpoint store) and is now running."""
    store = CheckpointStore(checkpoint_db)
    try:
        batch = store.pending()
    finally:
        store.close()
    if batch is None:
        raise RuntimeError("no pending micro-batch in the checkpoint store")
    return batch


def build_batch(p: beam.Pipeline, settings: BatchSettings) -> None:
    """Add the micro-batch transforms to ``p``: they process the checkpoint store's pending batch, so
    the graph is built once and run once per batch."""
    db = settings.checkpoint_db
    batch = p | "Impulse" >> beam.Impulse() | "PendingBatch" >> beam.Map(pending_batch, db)
    this_batch = beam.pvalue.AsSingleton(batch)
    parsed = (
        batch
        | "Ranges" >> beam.FlatMap(lambda b: b.ranges)
        | "ReadRanges" >> beam.ParDo(ReadRanges(str(settings.paths.incoming())))
        | "Parse" >> beam.ParDo(ParseEvents()).with_outputs(REJECTED, main=EVENTS)
    )
    deduped = parsed[EVENTS] | "Dedupe" >> DedupeBatch(db, this_batch)
    unique = deduped[UNIQUE]
    (
        (parsed[REJECTED], deduped[REJECTED])
        | "Rejected" >> beam.Flatten()
        | "DeadLetters" >> beam.ParDo(WriteDeadLetters(settings.data_root), this_batch)
    )
    unique | "Lake" >> WriteLake(settings.data_root, batch=this_batch)
    catalog = p | "CatalogRoot" >> beam.Create([settings.data_root]) | "LoadCatalog" >> beam.Map(load_stream_catalog)
    seed = settings.target if settings.seed_users else None
    item_events = unique | "ItemEvents" >> beam.Filter(lambda e: e.is_item_event)  # account events: not item state
    users = unique | "UserActivity" >> UserActivityBatch(db, catalog, seed)  # account events: its account state
    items = item_events | "ItemStats" >> ItemStatsBatch(db, this_batch, catalog, settings.future_tolerance_seconds)
    updates = (users, items) | "Updates" >> beam.Flatten()
    updates | "StageState" >> beam.ParDo(StageUpdates(db), this_batch)
    (
        updates
        | "Push" >> beam.ParDo(PushRows(settings.target, settings.push_rows))
        | "StageFreshness" >> beam.ParDo(StageFreshness(db), this_batch)
    )


def counters(result: PipelineResult) -> dict[str, int]:
    """The job's Beam counters of a finished pipeline, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for metric in query["counters"]:
        name = metric.key.metric.name
        totals[name] = totals.get(name, 0) + int(metric.committed or 0)
    return totals


class MicroBatchPipeline:
    """The micro-batch graph on the Python direct runner's batch engine (the FnApiRunner, named
    explicitly: the generic ``DirectRunner`` would first try to download Prism). Built once -- the
    construction costs about as much CPU as running a small batch -- and run once per batch."""

    def __init__(self, settings: BatchSettings) -> None:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        self.pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags=[]))
        build_batch(self.pipeline, settings)

    def run(self) -> dict[str, int]:
        """Process the pending batch; returns the run's counters."""
        result = self.pipeline.run()
        result.wait_until_finish()
        return counters(result)
