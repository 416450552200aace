"""The Arrow schemas of the lake's tables (events, catalog, users), one per record type of :mod:`common.schemas`."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from pydantic import BaseModel

_TS = pa.timestamp("us", tz="UTC")

EVENT_ARROW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("domain", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", _TS),
        ("request_id", pa.string()),
        ("position", pa.int32()),
        ("session_id", pa.string()),
        ("device", pa.string()),
        ("value", pa.float64()),
        ("quantity", pa.int32()),
        ("arm", pa.string()),
        ("propensity", pa.float64()),
        ("ingested_at", _TS),
    ]
)

CATALOG_ARROW_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("domain", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("margin", pa.float64()),
        ("inventory", pa.int64()),
        ("launched_at", _TS),
        ("brand", pa.string()),
        ("product_type", pa.string()),
        ("min_age", pa.int32()),
        ("max_age", pa.int32()),
        ("min_income", pa.float64()),
        ("min_credit_score", pa.int32()),
        ("max_dti", pa.float64()),
        ("requires_no_arrears", pa.bool_()),
        ("excludes", pa.list_(pa.string())),
    ]
)

USER_ARROW_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("domain", pa.string()),
        ("signed_up_at", _TS),
        ("country", pa.string()),
        ("age_band", pa.string()),
        ("age", pa.int32()),
        ("income", pa.float64()),
        ("credit_score", pa.int32()),
        ("dti", pa.float64()),
        ("has_arrears", pa.bool_()),
        ("products_held", pa.list_(pa.string())),
    ]
)


def to_arrow(records: Iterable[BaseModel], schema: pa.Schema) -> pa.Table:
    rows = [r.model_dump() for r in records]
    return pa.Table.from_pylist(rows, schema=schema)
