"""The unbounded job for scale: Pub/Sub or Kafka -> the same DoFns -> Feast + lake, on Flink or Dataflow.

::

    ReadFromPubSub | ReadFromKafka -> ToSourceLine -> ParseEvents -+-> rejected ----------+-> dead letters
                                                                    +-> DedupeFn (state) -+-> duplicates
                                                                         +-> WriteLake (1-minute windows, pane-named files)
                  catalog (PeriodicImpulse, refreshed) -> side input -->+-> UserActivityFn (state + timers) -+-> PushRows
                                                                         +-> HourlyItemCounts + sales -> ItemStatsFn -+

Exactly-once here is the runner's: Flink checkpoints / Dataflow's exactly-once commit state, timers
and source positions together (Kafka offsets are committed on checkpoint finalization, Pub/Sub
messages acknowledged after the bundle's state is durable). The effects stay idempotent on retries:
pushes overwrite rows, lake files are named by window and pane. Neither source runs on this machine
(Kafka needs a Java expansion service from Maven, Pub/Sub needs ``apache-beam[gcp]``); the graph
behind the source is exercised with ``TestStream`` in the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from beam_jobs.catalog import StreamCatalog, load_stream_catalog
from beam_jobs.dedupe import UNIQUE, DedupeFn
from beam_jobs.feast_io import FeastTarget, PushRows
from beam_jobs.features import FUTURE_TOLERANCE_SECONDS, HourlyItemCounts, sales_of
from beam_jobs.microbatch import EVENTS
from beam_jobs.parse import REJECTED, ParseEvents
from beam_jobs.records import SourceLine, StreamEvent
from beam_jobs.sinks import WriteDeadLetters, WriteLake
from beam_jobs.stateful import ItemStatsFn, UserActivityFn


@dataclass(frozen=True)
class UnboundedSettings:
    data_root: str
    target: FeastTarget
    flush_seconds: float = 1.0  # processing-time batching of per-entity updates (and early hourly panes)
    dedupe_hours: float = 48.0
    lake_window_seconds: int = 60
    catalog_refresh_seconds: float = 300.0
    seed_users: bool = True
    push_rows: int = 1_000
    future_tolerance_seconds: float = FUTURE_TOLERANCE_SECONDS  # event time believed up to arrival + this
    clock: Callable[[], float] = time.time  # processing time of the timers (TestStream's clock in tests)


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # pubsub | kafka
    topic: str | None = None  # Pub/Sub topic path, or the Kafka topic
    subscription: str | None = None  # Pub/Sub subscription path (instead of a topic)
    bootstrap: str | None = None  # Kafka bootstrap servers
    expansion_service: str | None = None  # Kafka: address of a running Java expansion service


class ToSourceLine(beam.DoFn):
    """A message payload -> ``SourceLine``; its arrival is the element timestamp (Pub/Sub publish time,
    Kafka log-append time)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def process(self, payload: bytes, timestamp=beam.DoFn.TimestampParam) -> Iterator[SourceLine]:
        yield SourceLine(self.source, -1, payload, float(timestamp))


def read_source(p: beam.Pipeline, spec: SourceSpec) -> beam.PCollection:
    """The raw lines of the message source."""
    if spec.kind == "pubsub":
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        if bool(spec.topic) == bool(spec.subscription):
            raise ValueError("--source pubsub needs exactly one of --topic or --subscription")
        payloads = p | "ReadPubSub" >> ReadFromPubSub(topic=spec.topic, subscription=spec.subscription)
    elif spec.kind == "kafka":
        from apache_beam.io.kafka import ReadFromKafka

        if not spec.bootstrap or not spec.topic:
            raise ValueError("--source kafka needs --bootstrap and --topic")
        payloads = (
            p
            | "ReadKafka" >> ReadFromKafka(
                consumer_config={"bootstrap.servers": spec.bootstrap, "group.id": "recsys-streaming"},
                topics=[spec.topic],
                timestamp_policy=ReadFromKafka.log_append_time,
                commit_offset_in_finalize=True,
                expansion_service=spec.expansion_service,
            )
            | "Values" >> beam.Map(lambda kv: kv[1])
        )
    else:
        raise ValueError(f"unknown message source {spec.kind!r} (pubsub or kafka)")
    return payloads | "ToSourceLine" >> beam.ParDo(ToSourceLine(spec.kind))


def refreshed_catalog(p: beam.Pipeline, settings: UnboundedSettings) -> beam.PCollection:
    """The catalog index, re-loaded every ``catalog_refresh_seconds`` (slowly changing side input)."""
    return (
        p
        | "CatalogTicks" >> PeriodicImpulse(fire_interval=settings.catalog_refresh_seconds, apply_windowing=False)
        | "LoadCatalog" >> beam.Map(lambda _: load_stream_catalog(settings.data_root))
        | "LatestCatalog" >> beam.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.Repeatedly(trigger.AfterCount(1)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
    )


def _by(key: str):
    def keyed(event: StreamEvent) -> tuple[str, StreamEvent]:
        return getattr(event.event, key), event

    return keyed


def build_unbounded(lines: beam.PCollection, catalog: beam.PCollection, settings: UnboundedSettings) -> None:
    """Add the streaming graph behind a source of ``SourceLine``s (``catalog``: a ``StreamCatalog``)."""
    side = beam.pvalue.AsSingleton(catalog)
    parsed = lines | "Parse" >> beam.ParDo(ParseEvents()).with_outputs(REJECTED, main=EVENTS)
    deduped = (
        parsed[EVENTS]
        | "ById" >> beam.Map(_by("event_id")).with_output_types(tuple[str, StreamEvent])
        | "Dedupe" >> beam.ParDo(DedupeFn(settings.dedupe_hours * 3_600, settings.clock)).with_outputs(REJECTED, main=UNIQUE)
    )
    unique = deduped[UNIQUE]
    (
        (parsed[REJECTED], deduped[REJECTED])
        | "Rejected" >> beam.Flatten()
        | "DeadLetters" >> beam.ParDo(WriteDeadLetters(settings.data_root))
    )
    unique | "Lake" >> WriteLake(settings.data_root, window_seconds=settings.lake_window_seconds)
    seed = settings.target if settings.seed_users else None
    item_events = unique | "ItemEvents" >> beam.Filter(lambda e: e.is_item_event)  # account events: not item state
    users = (
        unique  # account events: the account state of user_activity
        | "ByUser" >> beam.Map(_by("user_id")).with_output_types(tuple[str, StreamEvent])
        | "UserActivity" >> beam.ParDo(UserActivityFn(settings.flush_seconds, seed, settings.clock), side)
    )
    item_inputs = (
        item_events | "Hourly" >> HourlyItemCounts(
            streaming=True, early_firing_seconds=settings.flush_seconds,
            future_tolerance=settings.future_tolerance_seconds,
        ),
        item_events | "Sales" >> beam.FlatMap(sales_of),
    ) | "ItemInputs" >> beam.Flatten()
    items = item_inputs | "ItemStats" >> beam.ParDo(
        ItemStatsFn(settings.flush_seconds, settings.clock), side
    ).with_input_types(tuple[str, Any], StreamCatalog)  # a deterministic key coder for the state
    (users, items) | "Updates" >> beam.Flatten() | "Push" >> beam.ParDo(PushRows(settings.target, settings.push_rows))


def run_unbounded(spec: SourceSpec, settings: UnboundedSettings, beam_args: list[str]) -> None:
    """Submit the unbounded job; ``beam_args`` carry the runner and its options (e.g. ``--runner
    FlinkRunner --flink_master host:8081`` or ``--runner DataflowRunner --project ... --region ...``)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        build_unbounded(read_source(p, spec), refreshed_catalog(p, settings), settings)
