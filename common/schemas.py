"""The data contracts (events, catalog, users) and their validation.

One schema for every producer and consumer: the simulator, the import command, the API's event
intake, the streaming job and the Spark compaction all validate with :func:`validate_event` (or the
catalog/user equivalents). A bad record is never dropped silently: validation returns a
:class:`Rejection` with a machine-readable ``code``, the offending ``field`` and a human ``detail``,
which the caller writes to the dead-letter store.

Identifiers are global: every id carries its domain's prefix (``r_``, ``b_``, ``ml_``), so one Feast
entity per kind serves every domain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.account_events import ACCOUNT_EVENTS
from common.domains import domains

EVENT_TYPES = (
    "impression",
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "application_start",
    "application_approved",
    "decline",
    *ACCOUNT_EVENTS,  # card_spend, salary_credit, transfer: item_id names a counterparty (common.account_events)
)
EventType = Literal[
    "impression", "view", "click", "add_to_cart", "purchase", "application_start",
    "application_approved", "decline", "card_spend", "salary_credit", "transfer",
]

# Events older than this or further than MAX_FUTURE_SKEW ahead of the validator's clock are refused.
MIN_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(hours=24)


class Reason:
    """Rejection codes. Every dead-letter record carries exactly one of them."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_DOMAIN = "unknown_domain"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    EVENT_TYPE_NOT_ALLOWED = "event_type_not_allowed_for_domain"
    WRONG_ID_PREFIX = "wrong_id_prefix"
    TIMESTAMP_UNPARSEABLE = "timestamp_unparseable"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    NEGATIVE_VALUE = "negative_value"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    DOMAIN_READ_ONLY = "domain_read_only"
    SERVER_FIELD = "server_field"  # a client set a field only the platform may set (see SERVER_FIELDS)
    UNPROCESSABLE = "unprocessable_record"  # validating the record raised: it is refused, never the batch


# Fields of an event that only the platform sets: serving logs ``arm`` and ``propensity`` on the
# impressions it writes itself; a client posting them could forge the experiment's data.
SERVER_FIELDS = ("arm", "propensity")
MAX_DETAIL_CHARS = 500
MAX_FIELD_CHARS = 100


def safe_text(text: str, limit: int) -> str:
    """``text`` as valid Unicode (a lone surrogate becomes its escape, e.g. ``\\udc80``), cut at ``limit`` characters
    with a marker: what a rejection echoes back must itself be writable as JSON."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}... [truncated, {len(text)} chars]"


def shown(value: Any, limit: int = 80) -> str:
    """A bounded ``repr`` for messages; never raises (a repr can: integers beyond 4300 digits, deep nests)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a message must not fail on what it describes
        return f"<unprintable {type(value).__name__}>"
    return safe_text(text, limit)


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused. ``field`` and ``detail`` are made safe (valid Unicode, bounded) here,
    so a rejection can always be answered and dead-lettered whatever the record held."""

    code: str
    field: str | None
    detail: str

    def __post_init__(self) -> None:
        if self.field is not None:
            object.__setattr__(self, "field", safe_text(self.field, MAX_FIELD_CHARS))
        object.__setattr__(self, "detail", safe_text(self.detail, MAX_DETAIL_CHARS))

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "field": self.field, "detail": self.detail}


NonEmptyStr = Annotated[str, Field(min_length=1, max_length=256)]


def _parse_timestamp(value: Any) -> datetime:
    """ISO-8601 string (naive means UTC), datetime, or epoch seconds/milliseconds -> aware UTC."""
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp: a datetime subclass orjson cannot serialise
        ts = value.to_pydatetime()
    elif isinstance(value, datetime):
        ts = value
    elif isinstance(value, int | float):
        try:
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
            ts = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as err:  # OverflowError: an int beyond a float's range
            raise ValueError(f"epoch {shown(value, 40)} out of range") from err
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        ts = datetime.fromisoformat(text)
    else:
        raise ValueError(f"unsupported type {type(value).__name__}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


class Event(_Record):
    """One user event. ``request_id``/``position`` tie an impression (and feedback on it) to a slate."""

    event_id: NonEmptyStr
    domain: str
    user_id: NonEmptyStr
    item_id: NonEmptyStr
    event_type: str
    timestamp: datetime
    request_id: NonEmptyStr | None = None
    position: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    session_id: NonEmptyStr | None = None
    device: NonEmptyStr | None = None
    value: float | None = Field(default=None, ge=0, strict=True)
    quantity: int | None = Field(default=None, ge=0, le=1_000_000, strict=True)
    # Operational fields set by the platform itself (serving, streaming):
    arm: NonEmptyStr | None = None
    propensity: float | None = Field(default=None, gt=0, le=1, strict=True)
    ingested_at: datetime | None = None

    @field_validator("timestamp", "ingested_at", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        return None if value is None else _parse_timestamp(value)


class CatalogItem(_Record):
    item_id: NonEmptyStr
    domain: str
    title: NonEmptyStr
    description: str
    category: NonEmptyStr  # taxonomy path, levels separated by '>'
    price: float = Field(ge=0)
    margin: float = Field(ge=-1, le=1)  # fraction of price
    inventory: int = Field(ge=0)
    launched_at: datetime
    brand: str | None = None
    # banking eligibility and responsible-lending rules (null for other domains)
    product_type: str | None = None
    min_age: int | None = Field(default=None, ge=0)
    max_age: int | None = Field(default=None, ge=0)
    min_income: float | None = Field(default=None, ge=0)
    min_credit_score: int | None = Field(default=None, ge=0)
    max_dti: float | None = Field(default=None, ge=0)
    requires_no_arrears: bool | None = None
    excludes: list[str] | None = None  # item_ids a holder of which may not get this one

    @field_validator("launched_at", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        return _parse_timestamp(value)


class UserProfile(_Record):
    user_id: NonEmptyStr
    domain: str
    signed_up_at: datetime
    country: str | None = None
    age_band: str | None = None
    age: int | None = Field(default=None, ge=0, le=130)
    income: float | None = Field(default=None, ge=0)
    credit_score: int | None = Field(default=None, ge=0, le=1000)
    dti: float | None = Field(default=None, ge=0)
    has_arrears: bool | None = None
    products_held: list[str] | None = None

    @field_validator("signed_up_at", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        return _parse_timestamp(value)


# ---------------------------------------------------------------------------------------------
# validation entry points


def _clean(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Missing values from Parquet/pandas (None, NaN, NaT) mean 'absent'; numpy scalars become Python."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            continue
        if isinstance(value, np.datetime64):  # .item() of a [ns] value is an int of nanoseconds
            value = value.astype("datetime64[us]").item()  # a datetime; None for NaT
            if value is None:
                continue
        elif hasattr(value, "item") and not isinstance(value, str | bytes) and getattr(value, "ndim", 0) == 0:
            value = value.item()
        elif hasattr(value, "tolist") and not isinstance(value, str | bytes):
            value = value.tolist()
        if isinstance(value, float) and math.isnan(value):
            continue
        out[str(key)] = value
    return out


def _rejection_from(error: ValidationError) -> Rejection:
    first = error.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    kind = first["type"]
    msg = first["msg"]
    if kind == "missing":
        return Rejection(Reason.MISSING_FIELD, field, f"required field {field!r} is missing")
    if kind == "extra_forbidden":
        return Rejection(Reason.UNKNOWN_FIELD, field, f"field {field!r} is not part of the contract")
    if field in ("timestamp", "ingested_at", "launched_at", "signed_up_at") and kind in ("value_error", "datetime_type"):
        return Rejection(Reason.TIMESTAMP_UNPARSEABLE, field, f"cannot parse {shown(first.get('input'))} as a timestamp")
    if kind == "greater_than_equal" and first.get("ctx", {}).get("ge") == 0:
        return Rejection(Reason.NEGATIVE_VALUE, field, f"{field} must not be negative: {msg}")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("int_from_float",):
        return Rejection(Reason.WRONG_TYPE, field, f"{field}: {msg} (got {type(first.get('input')).__name__})")
    return Rejection(Reason.INVALID_VALUE, field, f"{field}: {msg}")


def _check_domain(record: dict[str, Any], id_fields: Iterable[str], known: dict | None = None) -> Rejection | None:
    name = record.get("domain")
    known = known if known is not None else domains()
    if not isinstance(name, str) or name not in known:
        return Rejection(Reason.UNKNOWN_DOMAIN, "domain", f"domain {name!r} is not one of {sorted(known)}")
    prefix = known[name].id_prefix
    for f in id_fields:
        value = record.get(f)
        if isinstance(value, str) and not value.startswith(prefix):
            return Rejection(Reason.WRONG_ID_PREFIX, f, f"{f} {value!r} must start with {prefix!r} in domain {name!r}")
    return None


def _not_unicode(record: Mapping[str, Any]) -> Rejection | None:
    """A string holding a lone surrogate (valid in JSON text, not in UTF-8) could never be written out."""
    for key, value in record.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return Rejection(Reason.INVALID_VALUE, key, f"{key}: not valid Unicode text (a lone surrogate)")
    return None


def validate_event(raw: Any, now: datetime | None = None) -> tuple[Event | None, Rejection | None]:
    """Validate one event record (a mapping). Returns ``(event, None)`` or ``(None, rejection)``; never
    raises: a record that makes validation fail in an unforeseen way is rejected as ``unprocessable``."""
    try:
        return _validate_event(raw, now)
    except Exception as err:  # noqa: BLE001 - one hostile record must not fail its whole batch
        return None, Rejection(Reason.UNPROCESSABLE, None, f"validation failed: {type(err).__name__}: {shown(err, 200)}")


def _validate_event(raw: Any, now: datetime | None) -> tuple[Event | None, Rejection | None]:
    if not isinstance(raw, Mapping):
        return None, Rejection(Reason.NOT_AN_OBJECT, None, f"an event must be a JSON object, got {type(raw).__name__}")
    record = _clean(raw)
    if rejection := _not_unicode(record):
        return None, rejection
    event_type = record.get("event_type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        return None, Rejection(Reason.UNKNOWN_EVENT_TYPE, "event_type", f"{event_type!r} is not one of {list(EVENT_TYPES)}")
    known = domains()
    if "domain" in record and (rej := _check_domain(record, ("user_id", "item_id"), known)):
        return None, rej
    try:
        event = Event.model_validate(record)
    except ValidationError as err:
        return None, _rejection_from(err)
    allowed = known[event.domain].event_types
    if event.event_type not in allowed:
        return None, Rejection(
            Reason.EVENT_TYPE_NOT_ALLOWED, "event_type", f"{event.event_type!r} is not used in domain {event.domain!r}"
        )
    now = now or datetime.now(UTC)
    if event.timestamp > now + MAX_FUTURE_SKEW:
        return None, Rejection(Reason.TIMESTAMP_IN_FUTURE, "timestamp", f"{event.timestamp.isoformat()} is after {now.isoformat()}")
    if event.timestamp < MIN_TIMESTAMP:
        return None, Rejection(Reason.TIMESTAMP_TOO_OLD, "timestamp", f"{event.timestamp.isoformat()} is before {MIN_TIMESTAMP.date()}")
    if event.event_type == "impression" and (event.request_id is None or event.position is None):
        missing = "request_id" if event.request_id is None else "position"
        return None, Rejection(Reason.MISSING_FIELD, missing, f"an impression needs {missing!r}")
    return event, None


def parse_event_line(line: str | bytes, now: datetime | None = None) -> tuple[Event | None, Rejection | None]:
    """Validate one line of JSONL; malformed JSON is a rejection, not an exception."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return None, Rejection(Reason.MALFORMED_JSON, None, f"not valid JSON: {err}")
    return validate_event(raw, now=now)


def validate_catalog_item(raw: Any) -> tuple[CatalogItem | None, Rejection | None]:
    if not isinstance(raw, Mapping):
        return None, Rejection(Reason.NOT_AN_OBJECT, None, "a catalog row must be an object")
    record = _clean(raw)
    if "domain" in record and (rej := _check_domain(record, ("item_id",))):
        return None, rej
    try:
        return CatalogItem.model_validate(record), None
    except ValidationError as err:
        return None, _rejection_from(err)


def validate_user(raw: Any) -> tuple[UserProfile | None, Rejection | None]:
    if not isinstance(raw, Mapping):
        return None, Rejection(Reason.NOT_AN_OBJECT, None, "a user row must be an object")
    record = _clean(raw)
    if "domain" in record and (rej := _check_domain(record, ("user_id",))):
        return None, rej
    try:
        return UserProfile.model_validate(record), None
    except ValidationError as err:
        return None, _rejection_from(err)


# ---------------------------------------------------------------------------------------------
# serialisation: JSONL lines (the lake's Arrow schemas: common.lake_schemas)

def event_to_json(event: Event) -> bytes:
    """One JSONL line (without newline); timestamps as ISO-8601 UTC with 'Z'."""
    return orjson.dumps(event.model_dump(exclude_none=True), option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
