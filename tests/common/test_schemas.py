"""The contract validators (common/schemas.py): every rejection reason, valid records, numpy/pandas input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from common.schemas import (
    Reason,
    Rejection,
    event_to_json,
    parse_event_line,
    validate_catalog_item,
    validate_event,
    validate_user,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
_DROP = object()  # marks a field to remove from the base record


def _event(**changes: Any) -> dict[str, Any]:
    base = {
        "event_id": "e-1",
        "domain": "retail",
        "user_id": "r_u1",
        "item_id": "r_i1",
        "event_type": "purchase",
        "timestamp": "2026-06-01T10:00:00Z",
        "value": 59.9,
        "quantity": 2,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


def _item(**changes: Any) -> dict[str, Any]:
    base = {
        "item_id": "r_i1",
        "domain": "retail",
        "title": "Trail shoe",
        "description": "A light trail running shoe.",
        "category": "Footwear>Running>Trail",
        "price": 120.0,
        "margin": 0.3,
        "inventory": 14,
        "launched_at": "2026-01-01T00:00:00Z",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


def _user(**changes: Any) -> dict[str, Any]:
    base = {"user_id": "r_u1", "domain": "retail", "signed_up_at": "2025-03-01T08:00:00Z", "country": "DE"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


# (label, validator, record, expected code, expected field)
CASES: list[tuple[str, Any, Any, str, str | None]] = [
    ("event list", validate_event, [1, 2], Reason.NOT_AN_OBJECT, None),
    ("catalog string", validate_catalog_item, "r_i1", Reason.NOT_AN_OBJECT, None),
    ("user number", validate_user, 3, Reason.NOT_AN_OBJECT, None),
    ("no user_id", validate_event, _event(user_id=_DROP), Reason.MISSING_FIELD, "user_id"),
    ("no domain", validate_event, _event(domain=_DROP), Reason.MISSING_FIELD, "domain"),
    ("NaN required", validate_event, _event(item_id=float("nan")), Reason.MISSING_FIELD, "item_id"),
    ("impression w/o request", validate_event, _event(event_type="impression", position=1), Reason.MISSING_FIELD, "request_id"),
    ("impression w/o position", validate_event, _event(event_type="impression", request_id="q1"), Reason.MISSING_FIELD, "position"),
    ("catalog no title", validate_catalog_item, _item(title=_DROP), Reason.MISSING_FIELD, "title"),
    ("user no signup", validate_user, _user(signed_up_at=_DROP), Reason.MISSING_FIELD, "signed_up_at"),
    ("event extra", validate_event, _event(rating=5), Reason.UNKNOWN_FIELD, "rating"),
    ("catalog extra", validate_catalog_item, _item(colour="red"), Reason.UNKNOWN_FIELD, "colour"),
    ("user extra", validate_user, _user(email="a@b.c"), Reason.UNKNOWN_FIELD, "email"),
    ("position as text", validate_event, _event(event_type="impression", request_id="q", position="3"), Reason.WRONG_TYPE, "position"),
    ("quantity bool", validate_event, _event(quantity=True), Reason.WRONG_TYPE, "quantity"),
    ("user_id number", validate_event, _event(user_id=17), Reason.WRONG_TYPE, "user_id"),
    ("value text", validate_event, _event(value="12.5"), Reason.WRONG_TYPE, "value"),
    ("price text", validate_catalog_item, _item(price="cheap"), Reason.WRONG_TYPE, "price"),
    ("unknown domain", validate_event, _event(domain="insurance"), Reason.UNKNOWN_DOMAIN, "domain"),
    ("catalog unknown domain", validate_catalog_item, _item(domain="shop"), Reason.UNKNOWN_DOMAIN, "domain"),
    ("unknown event type", validate_event, _event(event_type="like"), Reason.UNKNOWN_EVENT_TYPE, "event_type"),
    ("retail application", validate_event, _event(event_type="application_start"), Reason.EVENT_TYPE_NOT_ALLOWED, "event_type"),
    (
        "banking purchase",
        validate_event,
        _event(domain="banking", user_id="b_u1", item_id="b_card", event_type="purchase"),
        Reason.EVENT_TYPE_NOT_ALLOWED,
        "event_type",
    ),
    (
        "movielens click",
        validate_event,
        _event(domain="movielens", user_id="ml_u1", item_id="ml_m1", event_type="click", value=_DROP, quantity=_DROP),
        Reason.EVENT_TYPE_NOT_ALLOWED,
        "event_type",
    ),
    ("banking user id in retail", validate_event, _event(user_id="b_u1"), Reason.WRONG_ID_PREFIX, "user_id"),
    ("item prefix", validate_event, _event(item_id="i1"), Reason.WRONG_ID_PREFIX, "item_id"),
    ("catalog prefix", validate_catalog_item, _item(item_id="ml_m1"), Reason.WRONG_ID_PREFIX, "item_id"),
    ("user prefix", validate_user, _user(user_id="u1"), Reason.WRONG_ID_PREFIX, "user_id"),
    ("timestamp words", validate_event, _event(timestamp="yesterday"), Reason.TIMESTAMP_UNPARSEABLE, "timestamp"),
    ("timestamp bool", validate_event, _event(timestamp=True), Reason.TIMESTAMP_UNPARSEABLE, "timestamp"),
    ("timestamp 400 digits", validate_event, _event(timestamp=int("9" * 400)), Reason.TIMESTAMP_UNPARSEABLE, "timestamp"),
    ("lone surrogate", validate_event, _event(item_id="r_\ud800"), Reason.INVALID_VALUE, "item_id"),
    ("launched_at bad", validate_catalog_item, _item(launched_at="2026-13-45"), Reason.TIMESTAMP_UNPARSEABLE, "launched_at"),
    ("signed_up_at list", validate_user, _user(signed_up_at=[2025]), Reason.TIMESTAMP_UNPARSEABLE, "signed_up_at"),
    ("future", validate_event, _event(timestamp="2026-06-16T12:00:01Z"), Reason.TIMESTAMP_IN_FUTURE, "timestamp"),
    ("too old", validate_event, _event(timestamp="1989-12-31T23:59:59Z"), Reason.TIMESTAMP_TOO_OLD, "timestamp"),
    ("negative value", validate_event, _event(value=-0.01), Reason.NEGATIVE_VALUE, "value"),
    ("negative quantity", validate_event, _event(quantity=-1), Reason.NEGATIVE_VALUE, "quantity"),
    ("negative price", validate_catalog_item, _item(price=-5.0), Reason.NEGATIVE_VALUE, "price"),
    ("negative inventory", validate_catalog_item, _item(inventory=-1), Reason.NEGATIVE_VALUE, "inventory"),
    ("negative income", validate_user, _user(income=-1.0), Reason.NEGATIVE_VALUE, "income"),
    ("position zero", validate_event, _event(event_type="impression", request_id="q", position=0), Reason.INVALID_VALUE, "position"),
    ("propensity zero", validate_event, _event(propensity=0.0), Reason.INVALID_VALUE, "propensity"),
    ("blank event_id", validate_event, _event(event_id="   "), Reason.INVALID_VALUE, "event_id"),
    ("margin above 1", validate_catalog_item, _item(margin=1.5), Reason.INVALID_VALUE, "margin"),
    ("age 200", validate_user, _user(age=200), Reason.INVALID_VALUE, "age"),
]


@pytest.mark.parametrize(("label", "validate", "record", "code", "field"), CASES, ids=[c[0] for c in CASES])
def test_rejection_reason(label: str, validate: Any, record: Any, code: str, field: str | None) -> None:
    kwargs = {"now": NOW} if validate is validate_event else {}
    parsed, rejection = validate(record, **kwargs)
    assert parsed is None
    assert (rejection.code, rejection.field) == (code, field), rejection.detail
    assert rejection.detail


@pytest.mark.parametrize(
    ("line", "code"),
    [(b"{not json", Reason.MALFORMED_JSON), (b"", Reason.MALFORMED_JSON), (b'["a"]', Reason.NOT_AN_OBJECT), (b"42", Reason.NOT_AN_OBJECT)],
)
def test_jsonl_lines_that_are_not_objects(line: bytes, code: str) -> None:
    parsed, rejection = parse_event_line(line, now=NOW)
    assert parsed is None and rejection.code == code


def test_every_reason_code_is_exercised() -> None:
    produced = {c[3] for c in CASES} | {Reason.MALFORMED_JSON}
    # duplicate_event_id needs state across records: tests/ingest/test_importer.py produces it
    produced.add(Reason.DUPLICATE_EVENT_ID)
    # domain_read_only is a rule of live intake, not of the record: tests/serving/test_api_intake.py
    produced.add(Reason.DOMAIN_READ_ONLY)
    # server_field too: tests/faults/test_intake_hostile_records.py; unprocessable_record just below
    produced |= {Reason.SERVER_FIELD, Reason.UNPROCESSABLE}
    declared = {v for k, v in vars(Reason).items() if k.isupper()}
    assert produced == declared


class _Exploding(dict):
    """A record whose reading raises (fault injection): validation must reject it, never raise."""

    def items(self):  # type: ignore[override]
        raise RuntimeError("boom")


def test_a_record_that_makes_validation_raise_is_rejected() -> None:
    parsed, rejection = validate_event(_Exploding(_event()), now=NOW)
    assert parsed is None and rejection.code == Reason.UNPROCESSABLE and "RuntimeError: " in rejection.detail


def test_rejections_are_always_writable_text() -> None:
    rejection = Rejection(Reason.UNKNOWN_FIELD, "\ud800" * 500, "x" * 10_000)
    assert rejection.field.startswith("\\ud800") and "truncated" in rejection.field
    assert len(rejection.detail) < 600 and rejection.detail.endswith("[truncated, 10000 chars]")
    assert orjson.dumps(rejection.as_dict())


def test_future_skew_boundary() -> None:
    assert validate_event(_event(timestamp="2026-06-16T12:00:00Z"), now=NOW)[1] is None  # exactly now + 24 h
    assert validate_event(_event(timestamp="1990-01-01T00:00:00Z"), now=NOW)[1] is None


@pytest.mark.parametrize(
    "record",
    [
        _event(),
        _event(event_type="impression", request_id="req-9", position=3, value=_DROP, quantity=_DROP, arm="control", propensity=0.25),
        _event(domain="banking", user_id="b_u7", item_id="b_card_gold", event_type="application_approved", value=_DROP, quantity=_DROP),
        _event(domain="movielens", user_id="ml_u1", item_id="ml_m31", event_type="view", value=_DROP, quantity=_DROP),
        _event(value=10),  # an integer order value from a JSON client
    ],
    ids=["retail purchase", "retail impression", "banking approval", "movielens view", "int value"],
)
def test_valid_events_accepted(record: dict[str, Any]) -> None:
    event, rejection = validate_event(record, now=NOW)
    assert rejection is None
    assert event.timestamp == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert event.domain == record["domain"] and event.event_id == record["event_id"]


def test_valid_catalog_items_of_each_domain() -> None:
    banking = _item(
        item_id="b_loan_personal", domain="banking", category="Lending>Personal loan", product_type="loan",
        min_age=21, max_age=70, min_income=25_000.0, min_credit_score=650, max_dti=0.4,
        requires_no_arrears=True, excludes=["b_loan_car"], margin=-0.1,
    )
    movie = _item(item_id="ml_m1", domain="movielens", category="Movies>Comedy>Adventure", price=0.0, margin=0.0)
    for record in (_item(), banking, movie):
        item, rejection = validate_catalog_item(record)
        assert rejection is None, rejection
        assert item.item_id == record["item_id"]
    assert validate_catalog_item(banking)[0].excludes == ["b_loan_car"]


def test_valid_users_of_each_domain() -> None:
    banking = _user(user_id="b_u1", domain="banking", country=_DROP, age=41, income=52_000.0, credit_score=710,
                    dti=0.22, has_arrears=False, products_held=["b_card_basic"])
    for record in (_user(), banking, _user(user_id="ml_u1", domain="movielens", country=_DROP)):
        user, rejection = validate_user(record)
        assert rejection is None, rejection
        assert user.signed_up_at == datetime(2025, 3, 1, 8, tzinfo=UTC)


def test_timestamp_forms_agree() -> None:
    expected = datetime(2026, 6, 1, 10, tzinfo=UTC)
    forms = ["2026-06-01T10:00:00Z", "2026-06-01T10:00:00", "2026-06-01T12:00:00+02:00",
             1780308000, 1780308000.0, 1780308000000, datetime(2026, 6, 1, 10)]
    for form in forms:
        event, rejection = validate_event(_event(timestamp=form), now=NOW)
        assert rejection is None, (form, rejection)
        assert event.timestamp == expected, form


def test_numpy_scalars_and_nan_as_absent() -> None:
    record = _event(
        event_type="impression", request_id="q", position=np.int64(4), value=np.float64("nan"),
        quantity=np.int32(1), session_id=float("nan"), device=None, ingested_at=pd.NaT,
    )
    event, rejection = validate_event(record, now=NOW)
    assert rejection is None, rejection
    assert (event.position, event.value, event.quantity, event.session_id, event.ingested_at) == (4, None, 1, None, None)
    assert type(event.position) is int


def test_pandas_rows_validate() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["b_u1", "b_u2"],
            "domain": "banking",
            "signed_up_at": pd.to_datetime(["2025-01-01", "2025-02-01"], utc=True),
            "age": [30, 51],
            "income": [40_000.0, np.nan],
            "has_arrears": np.array([True, False]),
            "products_held": [np.array(["b_card"]), None],
        }
    )
    users = [validate_user(row) for row in frame.to_dict("records")]
    assert [r for _, r in users] == [None, None]
    first, second = users[0][0], users[1][0]
    assert first.products_held == ["b_card"] and first.has_arrears is True and first.age == 30
    assert second.income is None and second.products_held is None
    assert second.signed_up_at == datetime(2025, 2, 1, tzinfo=UTC)


# ---- defects of common/schemas.py (reported to the lead with a fix); strict: they fail once fixed --------


def test_numpy_datetime64_nanoseconds() -> None:
    stamp = pd.Series(pd.to_datetime(["2026-06-01T10:00:00"])).to_numpy()[0]  # as numpy hands it out
    assert isinstance(stamp, np.datetime64)
    event, rejection = validate_event(_event(timestamp=stamp), now=NOW)
    assert rejection is None and event.timestamp == datetime(2026, 6, 1, 10, tzinfo=UTC)


def test_pandas_na_is_absent() -> None:
    event, rejection = validate_event(_event(quantity=pd.NA), now=NOW)
    assert rejection is None and event.quantity is None


def test_pandas_timestamp_serialises() -> None:
    event, _ = validate_event(_event(timestamp=pd.Timestamp("2026-06-01T10:00:00Z")), now=NOW)
    assert b'"timestamp":"2026-06-01T10:00:00Z"' in event_to_json(event)


def test_epoch_out_of_range_is_a_rejection() -> None:
    assert validate_event(_event(timestamp=1e20), now=NOW)[1].code == Reason.TIMESTAMP_UNPARSEABLE


def test_unhashable_domain_is_a_rejection() -> None:
    assert validate_event(_event(domain=["retail"]), now=NOW)[1].code == Reason.UNKNOWN_DOMAIN


def test_infinite_value_is_rejected() -> None:
    assert validate_event(_event(value=float("inf")), now=NOW)[1] is not None


def test_future_check_uses_the_clock_by_default() -> None:
    tomorrow_plus = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert validate_event(_event(timestamp=tomorrow_plus))[1].code == Reason.TIMESTAMP_IN_FUTURE
