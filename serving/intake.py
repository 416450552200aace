"""Event intake: validate a batch record by record, append the good ones to the incoming stream,
dead-letter the bad ones with their reason, and turn served slates into impression events.

The experiment's fields (``arm``, ``propensity``) are the service's own: it writes them on the
impressions it logs (:func:`impression_events`, straight to the stream), and a client event carrying
one is rejected (``server_field``), so nobody holding an API key can forge an arm's data.
"""

from __future__ import annotations

import errno
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException

from common.deadletter import DeadLetterWriter
from common.domains import domains
from common.schemas import SERVER_FIELDS, Event, Reason, Rejection, event_to_json, validate_event
from serving.http import retry_later
from serving.reranking import SlateItem
from serving.stream import IncomingStreams, Pending

log = logging.getLogger(__name__)
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


def _server_field(raw: Any) -> Rejection | None:
    """A client event carrying a field only the service sets (the experiment's ``arm``, ``propensity``)."""
    if isinstance(raw, Mapping):
        for name in SERVER_FIELDS:
            if raw.get(name) is not None:
                return Rejection(Reason.SERVER_FIELD, name, f"{name!r} is set by the service on the impressions "
                                                            "it logs; a client event may not carry it")
    return None


def _check(raw: Any, seen: set[str], now: datetime) -> Event | Rejection:
    if rejection := _server_field(raw):
        return rejection
    event, rejection = validate_event(raw, now=now)
    if event is None:
        return rejection or Rejection(Reason.INVALID_VALUE, None, "invalid event")
    if domains()[event.domain].read_only:
        return Rejection(Reason.DOMAIN_READ_ONLY, "domain", f"domain {event.domain!r} takes no live events")
    if event.event_id in seen:
        return Rejection(Reason.DUPLICATE_EVENT_ID, "event_id", f"{event.event_id!r} repeats in this batch")
    seen.add(event.event_id)
    return event


def _line(event: Event, now: datetime) -> bytes | Rejection:
    try:
        return event_to_json(event.model_copy(update={"ingested_at": now}))
    except Exception as err:  # noqa: BLE001 - validated yet unwritable: this record is refused, not the batch
        return Rejection(Reason.UNPROCESSABLE, None, f"cannot be written to the stream: {type(err).__name__}: {err}")


def ingest(
    records: Sequence[Any], streams: IncomingStreams, dead_letters: DeadLetterWriter, now: datetime | None = None
) -> IntakeResult:
    """Validate every record; accepted events get ``ingested_at`` and are appended (durably) per domain.

    A record is rejected on its own, whatever it holds (validation never raises); only a failing disk
    fails the call (``OSError``: nothing was acknowledged, the client retries the batch -- events
    already appended by the failed call come back as duplicates, which the streaming job's dedupe
    counts). The stream is written before the dead letters, so a retry never dead-letters twice.
    """
    now = now or datetime.now(UTC)
    seen: set[str] = set()
    by_domain: dict[str, list[bytes]] = defaultdict(list)
    result = IntakeResult()
    rejected: list[tuple[Any, Rejection]] = []
    for index, raw in enumerate(records):
        checked = _check(raw, seen, now)
        line = checked if isinstance(checked, Rejection) else _line(checked, now)
        if isinstance(line, Rejection):
            rejected.append((raw, line))
            result.rejections.append(RecordRejection(index, line.code, line.field, line.detail))
            continue
        by_domain[checked.domain].append(line)
        result.accepted += 1
    for domain_name, lines in by_domain.items():
        streams.append(domain_name, lines)
    dead_letters.write_many(rejected)
    return result


_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL, IO_ERROR = "disk_full", "io_error"  # reasons of ``recsys_event_storage_failures``


def storage_failure_reason(err: OSError) -> str:
    """``disk_full`` when the disk is full (or over quota), ``io_error`` for any other I/O error."""
    return DISK_FULL if err.errno in _OUT_OF_SPACE else IO_ERROR


def storage_failure(err: OSError, retry_after_seconds: int) -> HTTPException:
    """The answer to a batch whose events could not be written: 507 when the disk is full (or over
    quota), 503 for any other I/O error, with ``Retry-After``; either way nothing was acknowledged
    and the client retries."""
    status = 507 if storage_failure_reason(err) == DISK_FULL else 503
    log.error("event intake cannot write to disk (%s): answering %d", err, status)
    return retry_later(f"events not stored ({err.strerror or err}); retry the whole batch later",
                       retry_after_seconds, status)


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
