"""Event intake: validate a batch record by record, append the good ones to the incoming stream,
dead-letter the bad ones with their reason, and turn served slates into impression events.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.deadletter import DeadLetterWriter
from common.domains import domains
from common.schemas import Event, Reason, Rejection, event_to_json, validate_event
from serving.reranking import SlateItem
from serving.stream import IncomingStreams, Pending

DEAD_LETTER_SOURCE = "api"


@dataclass(frozen=True)
class RecordRejection:
    index: int  # position of the record in the submitted batch
    code: str
    field: str | None
    detail: str


@dataclass
class IntakeResult:
    accepted: int = 0
    rejections: list[RecordRejection] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(Counter(r.code for r in self.rejections))


def _check(raw: Any, seen: set[str], now: datetime) -> Event | Rejection:
    event, rejection = validate_event(raw, now=now)
    if event is None:
        return rejection or Rejection(Reason.INVALID_VALUE, None, "invalid event")
    if domains()[event.domain].read_only:
        return Rejection(Reason.DOMAIN_READ_ONLY, "domain", f"domain {event.domain!r} takes no live events")
    if event.event_id in seen:
        return Rejection(Reason.DUPLICATE_EVENT_ID, "event_id", f"{event.event_id!r} repeats in this batch")
    seen.add(event.event_id)
    return event


def ingest(
    records: Sequence[Any], streams: IncomingStreams, dead_letters: DeadLetterWriter, now: datetime | None = None
) -> IntakeResult:
    """Validate every record; accepted events get ``ingested_at`` and are appended (durably) per domain."""
    now = now or datetime.now(UTC)
    seen: set[str] = set()
    by_domain: dict[str, list[bytes]] = defaultdict(list)
    result = IntakeResult()
    rejected: list[tuple[Any, Rejection]] = []
    for index, raw in enumerate(records):
        checked = _check(raw, seen, now)
        if isinstance(checked, Rejection):
            rejected.append((raw, checked))
            result.rejections.append(RecordRejection(index, checked.code, checked.field, checked.detail))
            continue
        event = checked
        by_domain[event.domain].append(event_to_json(event.model_copy(update={"ingested_at": now})))
        result.accepted += 1
    dead_letters.write_many(rejected)
    for domain_name, lines in by_domain.items():
        streams.append(domain_name, lines)
    return result


@dataclass(frozen=True)
class ServedSlate:
    """What impression logging needs to know about one served response."""

    domain: str
    user_id: str
    request_id: str
    arm: str
    items: Sequence[SlateItem]
    session_id: str | None
    device: str | None
    served_at: datetime


def impression_events(slate: ServedSlate) -> list[Event]:
    """One ``impression`` event per slot (1-based position), with the arm and the logged propensity."""
    return [
        Event(
            event_id=f"imp-{uuid.uuid4().hex}",
            domain=slate.domain,
            user_id=slate.user_id,
            item_id=item.item_id,
            event_type="impression",
            timestamp=slate.served_at,
            request_id=slate.request_id,
            position=position,
            session_id=slate.session_id,
            device=slate.device,
            arm=slate.arm,
            propensity=item.propensity,
            ingested_at=slate.served_at,
        )
        for position, item in enumerate(slate.items, start=1)
    ]


def impression_lines(slate: ServedSlate) -> list[bytes]:
    """The slate's impression events as JSON lines of the incoming stream."""
    return [event_to_json(e) for e in impression_events(slate)]


def pending_impressions(slate: ServedSlate) -> Pending:
    """The slate's impressions for :class:`serving.stream.GroupCommitWriter`: one line per slot, built
    (event ids, validation, JSON) on the writer thread, not on the request's."""
    return Pending(slate.domain, len(slate.items), lambda: impression_lines(slate))
