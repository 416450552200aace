"""Per-item real-time state behind the ``item_stats`` view (pure Python, no Beam).

Popularity and CTR use a sliding 1-day window that advances hourly -- the window of Beam's
``SlidingWindows(size=1 day, period=1 hour)`` that contains the item's domain watermark. Events are
first summed per item and fixed hour (``HourlyItemCounts``, real Beam windows, so out-of-order and
late events land in the hour they belong to); the state keeps those hourly sums and adds the last 24
of them. An hour leaves the window once the watermark passes its start + 1 day (``expires_at``): the
row is then re-pushed even without new events.

Counts follow the batch job (``spark_jobs.item_features``): popularity counts the domain's positive
events, impressions count ``impression`` events, clicks are clicks on a served slate (with a
``request_id``), and CTR is ``common.features.smoothed_ctr`` (the one formula of both jobs).
Inventory is the catalog's minus the units purchased since the stream saw that catalog value (a new
catalog value, e.g. a restock, re-bases it); an item that sells out gets ``in_stock = False``. An item missing from the catalog has no known stock
(``inventory = 0``, ``in_stock = False``), as in the batch job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.domains import domain as domain_config
from common.domains import domains
from common.features import EVENT_TIMESTAMP, ITEM_ID, ITEM_STATS, smoothed_ctr
from common.schemas import Event

HOUR = 3_600
WINDOW_HOURS = 24


def hour_start(ts: float) -> int:
    return int(ts // HOUR) * HOUR


@dataclass(frozen=True)
class ItemCounts:
    """Additive counts of one item in one hour, the earliest arrival and the latest event time among
    the counted events (the identity ``ItemCounts()`` has ``inf``/``-inf``)."""

    positives: int = 0
    impressions: int = 0
    clicks: int = 0
    arrived_at: float = math.inf
    latest: float = -math.inf

    def __add__(self, other: ItemCounts) -> ItemCounts:
        return ItemCounts(
            self.positives + other.positives,
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            min(self.arrived_at, other.arrived_at),
            max(self.latest, other.latest),
        )

    @classmethod
    def of(cls, event: Event, arrived_at: float) -> ItemCounts:
        kind = event.event_type
        return cls(
            positives=int(kind in domain_config(event.domain).positive_events),
            impressions=int(kind == "impression"),
            clicks=int(kind == "click" and event.request_id is not None),
            arrived_at=arrived_at,
            latest=event.timestamp.timestamp(),
        )


@dataclass(frozen=True)
class HourDelta:
    """Counts to add to one hour of an item (a pane of ``HourlyItemCounts``)."""

    hour: int
    counts: ItemCounts


@dataclass(frozen=True)
class Sale:
    units: int
    arrived_at: float


@dataclass(frozen=True)
class Refresh:
    """No new events: the item's window moved (an hour expired), recompute its row."""


ItemInput = HourDelta | Sale | Refresh


def domain_of_id(entity_id: str) -> str:
    """The domain of a validated id: ids carry their domain's prefix (``r_``, ``b_``, ``ml_``)."""
    for name, config in domains().items():
        if entity_id.startswith(config.id_prefix):
            return name
    raise ValueError(f"{entity_id!r} carries no known domain prefix")


def units_sold(event: Event) -> int:
    """Units an event takes out of stock: a purchase's quantity (1 when absent), else 0."""
    if event.event_type != "purchase":
        return 0
    return 1 if event.quantity is None else event.quantity


@dataclass
class ItemState:
    domain: str
    buckets: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # hour -> positives, impr., clicks
    sold: int = 0
    base_inventory: int | None = None  # the catalog inventory ``sold`` counts against

    @staticmethod
    def window_start(as_of: float) -> int:
        return hour_start(as_of) - (WINDOW_HOURS - 1) * HOUR

    def add_counts(self, hour: int, counts: ItemCounts) -> None:
        old = self.buckets.get(hour, (0, 0, 0))
        self.buckets[hour] = (old[0] + counts.positives, old[1] + counts.impressions, old[2] + counts.clicks)

    def add_sale(self, units: int) -> None:
        self.sold += units

    def apply(self, inputs: Iterable[ItemInput]) -> float | None:
        """Add hourly counts and sales; returns the earliest arrival among them (None if none)."""
        arrived = math.inf
        for item_input in inputs:
            if isinstance(item_input, HourDelta):
                self.add_counts(item_input.hour, item_input.counts)
                arrived = min(arrived, item_input.counts.arrived_at)
            elif isinstance(item_input, Sale):
                self.add_sale(item_input.units)
                arrived = min(arrived, item_input.arrived_at)
        return None if math.isinf(arrived) else arrived

    def rebase(self, catalog_inventory: int | None) -> None:
        """Count sales against ``catalog_inventory`` from now on if it differs from the current base."""
        if catalog_inventory != self.base_inventory:
            self.base_inventory = catalog_inventory
            self.sold = 0

    def prune(self, as_of: float) -> int:
        """Drop hours that left the window; returns how many were dropped."""
        start = self.window_start(as_of)
        old = [hour for hour in self.buckets if hour < start]
        for hour in old:
            del self.buckets[hour]
        return len(old)

    def expires_at(self) -> float | None:
        """Event time at which the oldest hour leaves the window (None when the window is empty)."""
        return min(self.buckets) + WINDOW_HOURS * HOUR if self.buckets else None

    @property
    def inventory(self) -> int:
        return 0 if self.base_inventory is None else max(self.base_inventory - self.sold, 0)

    def row(self, item_id: str, as_of: float) -> dict[str, Any]:
        """The ``item_stats`` push row as of the event time ``as_of`` (prune first)."""
        start = self.window_start(as_of)
        counted = [c for hour, c in self.buckets.items() if hour >= start]
        positives, impressions, clicks = (sum(c[k] for c in counted) for k in range(3))
        values = {
            "popularity_1d": positives,
            "impressions_1d": impressions,
            "ctr_1d": smoothed_ctr(clicks, impressions),
            "inventory": self.inventory,
            "in_stock": self.inventory > 0,
        }
        return {ITEM_ID: item_id, EVENT_TIMESTAMP: int(as_of), **{n: values[n] for n in ITEM_STATS.names}}

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "domain": self.domain,
                "buckets": {str(h): c for h, c in self.buckets.items()},
                "sold": self.sold,
                "base_inventory": self.base_inventory,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ItemState:
        raw = orjson.loads(data)
        return cls(
            domain=raw["domain"],
            buckets={int(h): (int(c[0]), int(c[1]), int(c[2])) for h, c in raw["buckets"].items()},
            sold=int(raw["sold"]),
            base_inventory=raw["base_inventory"],
        )
