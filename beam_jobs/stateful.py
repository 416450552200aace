"""Keyed state and timers for the unbounded job (Flink/Dataflow), where the runner checkpoints state.

- ``UserActivityFn``: per user, buffers events and, ``flush_seconds`` of processing time after the
  first buffered one, folds them into the user's state and emits one row (batched pushes);
- ``ItemStatsFn``: per item, buffers hourly deltas and sales the same way; an event-time timer at
  the state's ``expires_at`` re-emits the row when an hour leaves the 1-day window.

Both fold with the same pure state classes as the micro-batch job (``user_state``, ``item_state``).
Side inputs are only readable in ``process`` (and, next to state parameters, must be passed
positionally), so the catalog's category (users) and inventory (items) are looked up there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder, BytesCoder, FloatCoder, PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_jobs.catalog import StreamCatalog
from beam_jobs.feast_io import FeastTarget, read_activity_rows
from beam_jobs.features import item_update, start_user_state, user_update
from beam_jobs.item_state import HourDelta, ItemInput, ItemState, domain_of_id
from beam_jobs.records import FeatureUpdate, StreamEvent
from beam_jobs.user_state import UserActivityState

Clock = Callable[[], float]  # processing time in epoch seconds (a test clock under TestStream)


# The state every keyed function here keeps: the folded state and the bag buffered since the last flush
# with whether its flush timer is set. (Timer specs are per class: Beam attaches one callback to each.)
STATE = ReadModifyWriteStateSpec("state", BytesCoder())
BUFFER = BagStateSpec("buffer", PickleCoder())
ARMED = ReadModifyWriteStateSpec("armed", BooleanCoder())


class BufferedFn(beam.DoFn):
    """Per key: an element is admitted (which may start the key's state) into a bag; ``flush_seconds``
    of processing time after the first buffered one, the class's flush timer folds the bag
    (:func:`take_buffered`) into the state. Flushing once per key and period batches the pushes.
    A subclass sets ``process = buffering_process(its FLUSH timer spec, its admit function)``."""

    def __init__(self, flush_seconds: float, clock: Clock = time.time) -> None:
        self.flush_seconds = flush_seconds
        self.clock = clock


# (the function, the key, the value, the catalog side input, the key's state) -> what to buffer
Admit = Callable[[Any, str, Any, StreamCatalog, Any], Any]


def buffering_process(flush_spec: TimerSpec, admit: Admit) -> Callable[..., None]:
    """A :class:`BufferedFn`'s ``process`` for its flush timer, buffering what ``admit`` returns (Beam
    reads the state and timer specs from the parameters' defaults, so the method is made per timer)."""

    def process(
        self: BufferedFn,
        element: tuple[str, Any],
        catalog: StreamCatalog,
        state=beam.DoFn.StateParam(STATE),
        buffer=beam.DoFn.StateParam(BUFFER),
        armed=beam.DoFn.StateParam(ARMED),
        flush=beam.DoFn.TimerParam(flush_spec),
    ) -> None:
        key, value = element
        buffer.add(admit(self, key, value, catalog, state))
        if not armed.read():
            armed.write(True)
            flush.set(Timestamp.of(self.clock() + self.flush_seconds))

    return process


def take_buffered(buffer: Any, armed: Any) -> list[Any]:
    """What the key's bag holds since the last flush; the bag emptied and the timer marked unset."""
    values = list(buffer.read())
    buffer.clear()
    armed.clear()
    return values


class UserActivityFn(BufferedFn):
    """``(user_id, StreamEvent)`` -> ``FeatureUpdate`` at most once per ``flush_seconds`` per user; a
    user's first event seeds the state from the online row (``seed_from``) when there is one."""

    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(self, flush_seconds: float, seed_from: FeastTarget | None, clock: Clock = time.time) -> None:
        super().__init__(flush_seconds, clock)
        self.seed_from = seed_from

    def setup(self) -> None:
        self.online = None if self.seed_from is None else self.seed_from.open()

    def admit(self, key: str, value: StreamEvent, catalog: StreamCatalog, state: Any) -> tuple[StreamEvent, Any]:
        if state.read() is None:
            online_row = None if self.online is None else read_activity_rows(self.online, [key]).get(key)
            state.write(start_user_state(value.event.domain, online_row, catalog.categories).to_json())
        return value, catalog.category(value.event.item_id)

    process = buffering_process(FLUSH, admit)

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        state=beam.DoFn.StateParam(STATE),
        buffer=beam.DoFn.StateParam(BUFFER),
        armed=beam.DoFn.StateParam(ARMED),
    ) -> Iterator[FeatureUpdate]:
        buffered = take_buffered(buffer, armed)
        current = UserActivityState.from_json(state.read())
        categories = {e.event.item_id: category for e, category in buffered}
        update = user_update(key, current, [e for e, _ in buffered], categories)
        if update is not None:
            state.write(update.state)
            yield update


class ItemStatsFn(BufferedFn):
    """``(item_id, ItemInput)`` -> ``FeatureUpdate`` at most once per ``flush_seconds`` per item, and
    again whenever an hour leaves the item's 1-day window (event-time timer)."""

    AS_OF = ReadModifyWriteStateSpec("as_of", FloatCoder())  # latest event time seen for the item
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def admit(self, key: str, value: ItemInput, catalog: StreamCatalog, state: Any) -> ItemInput:
        stored = state.read()
        current = ItemState.from_json(stored) if stored is not None else ItemState(domain=domain_of_id(key))
        current.rebase(catalog.inventory.get(key))
        state.write(current.to_json())
        return value

    process = buffering_process(FLUSH, admit)

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        as_of_state=beam.DoFn.StateParam(AS_OF),
        state=beam.DoFn.StateParam(STATE),
        buffer=beam.DoFn.StateParam(BUFFER),
        armed=beam.DoFn.StateParam(ARMED),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[FeatureUpdate]:
        inputs = take_buffered(buffer, armed)
        current = ItemState.from_json(state.read())
        arrived = current.apply(inputs)
        latest = [i.counts.latest for i in inputs if isinstance(i, HourDelta)]
        as_of = max([as_of_state.read() or 0.0, *latest])
        as_of_state.write(as_of)
        yield from self._emit(key, current, as_of, arrived, state, expiry)

    @on_timer(EXPIRY)
    def on_expiry(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        as_of_state=beam.DoFn.StateParam(AS_OF),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[FeatureUpdate]:
        as_of = max(as_of_state.read() or 0.0, float(fired))
        as_of_state.write(as_of)
        yield from self._emit(key, ItemState.from_json(state.read()), as_of, None, state, expiry)

    @staticmethod
    def _emit(
        item_id: str, current: ItemState, as_of: float, arrived: float | None, state: Any, expiry: Any
    ) -> Iterator[FeatureUpdate]:
        update = item_update(item_id, current, as_of, arrived)
        state.write(update.state)
        if update.expires_at is not None:
            expiry.set(Timestamp.of(update.expires_at))
        yield update
