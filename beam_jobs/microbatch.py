"""The Beam pipeline of ONE micro-batch (bounded: the byte ranges planned for the batch).

::

    ranges -> ReadRanges -> ParseEvents -+-> rejected ------------------------+-> dead letters
                                         +-> DedupeBatch -+-> duplicates -----+
                                                          +-> unique -+-> WriteLake (lake partitions)
                         catalog (side input) ----------------------->+-> UserActivityBatch -+-> StageUpdates
                                                                      +-> ItemStatsBatch ----+-> PushRows -> StageFreshness

Every external write is idempotent for a replay of the same batch, and everything the commit needs
(state, seen ids, watermarks, freshness samples) is staged in the checkpoint store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from beam_jobs.catalog import load_catalog_index
from beam_jobs.checkpoint import Batch
from beam_jobs.dedupe import UNIQUE, DedupeBatch
from beam_jobs.feast_io import FeastTarget, PushRows
from beam_jobs.features import ItemStatsBatch, UserActivityBatch
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

    @property
    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_root))


def batch_name(batch_id: int) -> str:
    """Name of a batch's lake files and dead-letter file."""
    return f"batch-{batch_id:010d}"


def build_batch(p: beam.Pipeline, batch: Batch, settings: BatchSettings) -> None:
    """Add the micro-batch's transforms to ``p``."""
    name, db = batch_name(batch.id), settings.checkpoint_db
    incoming = str(settings.paths.incoming())
    parsed = (
        p
        | "Ranges" >> beam.Create(batch.ranges)
        | "ReadRanges" >> beam.ParDo(ReadRanges(incoming))
        | "Parse" >> beam.ParDo(ParseEvents()).with_outputs(REJECTED, main=EVENTS)
    )
    deduped = parsed[EVENTS] | "Dedupe" >> DedupeBatch(db, batch.id)
    unique = deduped[UNIQUE]
    (
        (parsed[REJECTED], deduped[REJECTED])
        | "Rejected" >> beam.Flatten()
        | "DeadLetters" >> beam.ParDo(WriteDeadLetters(settings.data_root, name))
    )
    unique | "Lake" >> WriteLake(settings.data_root, basename=name)
    catalog = p | "CatalogRoot" >> beam.Create([settings.data_root]) | "LoadCatalog" >> beam.Map(load_catalog_index)
    seed = settings.target if settings.seed_users else None
    users = unique | "UserActivity" >> UserActivityBatch(db, catalog, seed)
    items = unique | "ItemStats" >> ItemStatsBatch(db, batch.id, catalog)
    updates = (users, items) | "Updates" >> beam.Flatten()
    updates | "StageState" >> beam.ParDo(StageUpdates(db, batch.id))
    (
        updates
        | "Push" >> beam.ParDo(PushRows(settings.target, settings.push_rows))
        | "StageFreshness" >> beam.ParDo(StageFreshness(db, batch.id))
    )


def counters(result: PipelineResult) -> dict[str, int]:
    """The job's Beam counters of a finished pipeline, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for metric in query["counters"]:
        name = metric.key.metric.name
        totals[name] = totals.get(name, 0) + int(metric.committed or 0)
    return totals


def run_batch(batch: Batch, settings: BatchSettings) -> dict[str, int]:
    """Run one micro-batch on the Python direct runner's batch engine (the FnApiRunner, named
    explicitly: the generic ``DirectRunner`` would first try to download Prism); returns its counters."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags=[]))
    build_batch(pipeline, batch, settings)
    result = pipeline.run()
    result.wait_until_finish()
    return counters(result)
