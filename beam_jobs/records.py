"""The records that flow between the streaming job's DoFns (plain, picklable, immutable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.domains import domain as domain_config
from common.schemas import Event, Rejection

DEAD_LETTER_SOURCE = "streaming"  # dead_letter/streaming/...
METRICS_NAMESPACE = "recsys.streaming"


@dataclass(frozen=True)
class SourceLine:
    """One raw line of input and where it came from.

    ``source`` is the incoming file (relative to ``incoming/``) or the message source's name;
    ``offset`` the byte offset of the line in that file (-1 for messages); ``arrived_at`` the epoch
    seconds at which the platform first saw the bytes (the file tailer's observation time, or the
    message's publish time).
    """

    source: str
    offset: int
    data: bytes
    arrived_at: float


@dataclass(frozen=True)
class StreamEvent:
    """A validated event plus its provenance. ``arrived_at`` is the event's ``ingested_at`` when the
    producer set it (serving does), else the line's arrival time."""

    event: Event
    source: str
    offset: int
    arrived_at: float

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def ts(self) -> float:
        """Event time in epoch seconds."""
        return self.event.timestamp.timestamp()

    @property
    def is_item_event(self) -> bool:
        """False for an account event (card spend, salary, transfer: its item_id is a counterparty, not an
        item), which the item state leaves out and the user state keeps apart (its account fields)."""
        return self.event.event_type in domain_config(self.event.domain).item_event_types


@dataclass(frozen=True)
class Rejected:
    """A record refused by validation or deduplication, bound for the dead-letter store."""

    raw: Any  # the line as received (bytes) or the parsed object
    rejection: Rejection


@dataclass(frozen=True)
class FeatureUpdate:
    """A new feature row for one entity of a streaming view, with the state that produced it.

    ``arrived_at`` is the earliest arrival among the events this row newly reflects (None when the
    row changed only because time passed, e.g. an hour fell out of a 1-day window): freshness is
    measured from it. ``expires_at`` is the event time at which the row would change without new
    events (item windows), ``domain`` the entity's domain.
    """

    view: str
    entity_id: str
    row: dict[str, Any]
    state: bytes
    domain: str
    arrived_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class FreshnessSample:
    view: str
    seconds: float
