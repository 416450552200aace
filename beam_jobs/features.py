"""The feature transforms of a micro-batch: ``StreamEvent``s -> ``FeatureUpdate``s.

The prior state of every entity comes from the checkpoint store (committed by earlier batches) and
the new state is emitted with the row, to be staged and committed with the batch's offsets:

- ``UserActivityBatch``: group the batch by user, fold the events into the user's state (seeded from
  the row already online the first time the job meets the user, see ``user_state``);
- ``ItemStatsBatch``: ``HourlyItemCounts`` (event-time hourly windows) plus purchases and the items
  whose window expired (time passed) -> group by item -> fold into the item's state as of its
  domain's watermark (the largest event time seen in the domain).

``HourlyItemCounts`` is shared with the unbounded job, where early and late panes fire.

Clock skew: an event's time is the client's and may be up to a day ahead (``common.schemas``
accepts it). It is never trusted beyond the server's clock: the time an event is windowed at is
``min(timestamp, arrival + future_tolerance)`` (arrival = ``ingested_at``, set by serving; clamps are
counted as ``event_time_clamped``), and the watermark -- which only moves forward -- advances at most
to the arrival (``ItemCounts.latest`` is ``min(timestamp, arrival)``). A phone 23 h fast therefore
cannot push every item's 1-day window a day ahead; replayed history (event time behind arrival)
still windows at its own time.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterable, Iterator, Mapping
from functools import reduce
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from beam_jobs.catalog import StreamCatalog
from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.feast_io import FeastTarget, read_activity_rows
from beam_jobs.item_state import (
    HOUR,
    HourDelta,
    ItemCounts,
    ItemInput,
    ItemState,
    Refresh,
    Sale,
    domain_of_id,
    units_sold,
)
from beam_jobs.records import METRICS_NAMESPACE, FeatureUpdate, StreamEvent
from beam_jobs.user_state import UserActivityState
from common.features import ITEM_STATS, USER_ACTIVITY
from common.online_features import OnlineFeatures

DAY = 86_400
FUTURE_TOLERANCE_SECONDS = 300.0  # how far past its arrival an event's own time is believed


def sum_counts(values: Iterable[ItemCounts]) -> ItemCounts:
    return reduce(operator.add, values, ItemCounts())


def bounded_event_time(event: StreamEvent, future_tolerance: float) -> float:
    """The time ``event`` is windowed at: its own, but never more than ``future_tolerance`` seconds
    past its arrival (a client clock running ahead); every clamp is counted."""
    limit = event.arrived_at + future_tolerance
    if event.ts > limit:
        Metrics.counter(METRICS_NAMESPACE, "event_time_clamped").inc()
        return limit
    return event.ts


def timed_counts(event: StreamEvent, future_tolerance: float) -> window.TimestampedValue:
    """``(item_id, counts)`` at the event's bounded time; ``counts.latest`` -- what advances the
    watermark -- is at most the arrival, so no client clock moves the watermark past the server's."""
    counts = ItemCounts.of(event.event, event.arrived_at)
    counts = dataclasses.replace(counts, latest=min(counts.latest, event.arrived_at))
    return window.TimestampedValue((event.event.item_id, counts), bounded_event_time(event, future_tolerance))


class _AttachHour(beam.DoFn):
    """``(item_id, counts)`` of an hourly pane -> ``(item_id, HourDelta)``; empty panes are dropped."""

    def process(self, element: tuple[str, ItemCounts], win=beam.DoFn.WindowParam) -> Iterator[tuple[str, HourDelta]]:
        item_id, counts = element
        if not math.isinf(counts.arrived_at):
            yield item_id, HourDelta(int(win.start), counts)


class HourlyItemCounts(beam.PTransform):
    """``StreamEvent``s -> ``(item_id, HourDelta)`` per item and fixed event-time hour (the bounded
    event time, see ``bounded_event_time``), re-windowed into the global window.

    In a micro-batch (bounded) every hour fires once. With ``streaming`` the panes are deltas
    (discarding mode): with ``early_firing_seconds`` an hour fires early every that many seconds of
    processing time, the on-time pane fires when the watermark passes the hour and every late event
    within ``allowed_lateness`` (1 day: older hours are out of the 1-day window anyway) fires a late
    pane. Later events are dropped here; they still reach the lake and the users' features.
    """

    def __init__(
        self, streaming: bool = False, early_firing_seconds: float | None = None, allowed_lateness: int = DAY,
        future_tolerance: float = FUTURE_TOLERANCE_SECONDS,
    ) -> None:
        super().__init__()
        self.streaming = streaming
        self.early_firing_seconds = early_firing_seconds
        self.allowed_lateness = allowed_lateness
        self.future_tolerance = future_tolerance

    def _hours(self) -> beam.WindowInto:
        if not self.streaming:
            return beam.WindowInto(window.FixedWindows(HOUR))
        early = None
        if self.early_firing_seconds is not None:  # the trigger's delay is whole seconds
            early = trigger.AfterProcessingTime(max(1, math.ceil(self.early_firing_seconds)))
        return beam.WindowInto(
            window.FixedWindows(HOUR),
            trigger=trigger.AfterWatermark(early=early, late=trigger.AfterCount(1)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
            allowed_lateness=Duration(seconds=self.allowed_lateness),
        )

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "AtEventTime" >> beam.Map(timed_counts, self.future_tolerance).with_output_types(tuple[str, Any])
            | "Hours" >> self._hours()
            | "Sum" >> beam.CombinePerKey(sum_counts)
            | "AttachHour" >> beam.ParDo(_AttachHour())
            | "Global" >> beam.WindowInto(window.GlobalWindows())
        )


class _StateDoFn(beam.DoFn):
    """A DoFn reading committed state from the checkpoint store."""

    def __init__(self, checkpoint_db: str) -> None:
        self.checkpoint_db = checkpoint_db

    def setup(self) -> None:
        self.store = CheckpointStore(self.checkpoint_db)

    def teardown(self) -> None:
        self.store.close()


def start_user_state(
    domain: str, online_row: Mapping[str, Any] | None, categories: Mapping[str, str]
) -> UserActivityState:
    """A new user's state, seeded from their ``user_activity`` row online (batch-initialised) if any."""
    state = UserActivityState(domain=domain)
    if online_row is not None:
        state.seed(online_row, categories)
        Metrics.counter(METRICS_NAMESPACE, "users_seeded").inc()
    return state


def user_update(
    user_id: str, state: UserActivityState, events: list[StreamEvent], categories: Mapping[str, str | None]
) -> FeatureUpdate | None:
    """Fold ``events`` into ``state``; the new row, or None when nothing changed (impressions only)."""
    if not state.apply_all((e.event for e in events), categories):
        return None
    arrived = min(e.arrived_at for e in events if e.event.event_type != "impression")
    return FeatureUpdate(USER_ACTIVITY.name, user_id, state.row(user_id), state.to_json(), state.domain, arrived)


def item_update(item_id: str, state: ItemState, as_of: float, arrived: float | None) -> FeatureUpdate:
    """Prune ``state`` to the window as of ``as_of`` and emit its row."""
    Metrics.counter(METRICS_NAMESPACE, "item_hours_expired").inc(state.prune(as_of))
    return FeatureUpdate(
        ITEM_STATS.name, item_id, state.row(item_id, as_of), state.to_json(), state.domain, arrived, state.expires_at()
    )


class ApplyUserEvents(_StateDoFn):
    """``(user_id, events)`` -> the user's new ``user_activity`` row and state (none for impressions only).

    Users without committed state are seeded from the online store, ``SEED_BATCH`` users per read.
    """

    SEED_BATCH = 500

    def __init__(self, checkpoint_db: str, seed_from: FeastTarget | None) -> None:
        super().__init__(checkpoint_db)
        self.seed_from = seed_from
        self._new: list[tuple[str, list[StreamEvent]]] = []

    def setup(self) -> None:
        super().setup()
        self.online: OnlineFeatures | None = None if self.seed_from is None else self.seed_from.open()

    def start_bundle(self) -> None:
        self._new = []

    def process(
        self, element: tuple[str, Iterable[StreamEvent]], catalog: StreamCatalog
    ) -> Iterator[FeatureUpdate]:
        self.catalog = catalog
        user_id, grouped = element
        prior = self.store.state(USER_ACTIVITY.name, user_id)
        if prior is None:
            self._new.append((user_id, list(grouped)))
            if len(self._new) >= self.SEED_BATCH:
                yield from self._start_new()
            return
        update = user_update(user_id, UserActivityState.from_json(prior), list(grouped), catalog.categories)
        if update is not None:
            yield update

    def _start_new(self) -> Iterator[FeatureUpdate]:
        new, self._new = self._new, []
        rows = {} if self.online is None else read_activity_rows(self.online, [u for u, _ in new])
        for user_id, events in new:
            state = start_user_state(events[0].event.domain, rows.get(user_id), self.catalog.categories)
            update = user_update(user_id, state, events, self.catalog.categories)
            if update is not None:
                yield update

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for update in self._start_new():
            yield WindowedValue(update, Timestamp.now(), [GlobalWindow()])


class UserActivityBatch(beam.PTransform):
    def __init__(self, checkpoint_db: str, catalog: beam.PCollection, seed_from: FeastTarget | None) -> None:
        super().__init__()
        self.checkpoint_db = checkpoint_db
        self.catalog = catalog
        self.seed_from = seed_from

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "ByUser" >> beam.Map(lambda e: (e.event.user_id, e)).with_output_types(tuple[str, Any])
            | "GroupByUser" >> beam.GroupByKey()
            | "Apply" >> beam.ParDo(
                ApplyUserEvents(self.checkpoint_db, self.seed_from), catalog=beam.pvalue.AsSingleton(self.catalog)
            )
        )


class MergeWatermark(_StateDoFn):
    """``(domain, max event time in the batch)`` -> ``(domain, new watermark)``, staged for the commit."""

    def process(self, element: tuple[str, float], batch: Batch) -> Iterator[tuple[str, float]]:
        domain, latest = element
        stored = self.store.watermark(domain)
        mark = latest if stored is None else max(stored, latest)
        self.store.stage_watermarks(batch.id, [(domain, mark)])
        yield domain, mark


class ExpiredItems(_StateDoFn):
    """``(domain, watermark)`` -> ``(item_id, Refresh())`` for every item whose window moved."""

    def process(self, element: tuple[str, float]) -> Iterator[tuple[str, ItemInput]]:
        domain, mark = element
        for item_id in self.store.expired_items(domain, mark):
            yield item_id, Refresh()


class ApplyItemInputs(_StateDoFn):
    """``(item_id, inputs)`` -> the item's new ``item_stats`` row and state, as of its domain's watermark."""

    def process(
        self, element: tuple[str, Iterable[ItemInput]], watermarks: dict[str, float], catalog: StreamCatalog
    ) -> Iterator[FeatureUpdate]:
        item_id, inputs = element
        prior = self.store.state(ITEM_STATS.name, item_id)
        state = ItemState.from_json(prior) if prior is not None else ItemState(domain=domain_of_id(item_id))
        state.rebase(catalog.inventory.get(item_id))
        arrived = state.apply(inputs)
        yield item_update(item_id, state, watermarks[state.domain], arrived)


def sales_of(event: StreamEvent) -> Iterator[tuple[str, ItemInput]]:
    units = units_sold(event.event)
    if units:
        yield event.event.item_id, Sale(units, event.arrived_at)


class ItemStatsBatch(beam.PTransform):
    def __init__(
        self, checkpoint_db: str, batch: Any, catalog: beam.PCollection,
        future_tolerance: float = FUTURE_TOLERANCE_SECONDS,
    ) -> None:
        super().__init__()
        self.checkpoint_db = checkpoint_db
        self.batch = batch
        self.catalog = catalog
        self.future_tolerance = future_tolerance

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        db = self.checkpoint_db
        hourly = events | "Hourly" >> HourlyItemCounts(future_tolerance=self.future_tolerance)
        marks = (
            hourly
            | "EventTimes" >> beam.Map(lambda kv: (domain_of_id(kv[0]), kv[1].counts.latest)).with_output_types(
                tuple[str, float]
            )
            | "LatestPerDomain" >> beam.CombinePerKey(max)
            | "Watermarks" >> beam.ParDo(MergeWatermark(db), self.batch)
        )
        sales = events | "Sales" >> beam.FlatMap(sales_of)
        refresh = marks | "Expired" >> beam.ParDo(ExpiredItems(db))
        return (
            (hourly, sales, refresh)
            | "Inputs" >> beam.Flatten()
            | "GroupByItem" >> beam.GroupByKey()
            | "Apply" >> beam.ParDo(
                ApplyItemInputs(db),
                watermarks=beam.pvalue.AsDict(marks),
                catalog=beam.pvalue.AsSingleton(self.catalog),
            )
        )
