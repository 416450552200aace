"""Synthetic offline feature rows shaped exactly like the Spark jobs' output.

Used by the benchmark (demo-sized data when the pipeline has not run) and by the tests. The layout
mimics Spark: ``part-*.snappy.parquet`` files with ``.crc`` siblings and a ``_SUCCESS`` marker.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.features import CREATED, EVENT_TIMESTAMP, FeatureField, FeatureViewSpec
from common.paths import DataPaths

TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW: dict[str, pa.DataType] = {
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Bool": pa.bool_(),
    "UnixTimestamp": TIMESTAMP,
}
MAX_LIST_LENGTH = 8


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type Spark writes for a Feast dtype string (``Array(X)`` -> ``list<X>``)."""
    if dtype.startswith("Array(") and dtype.endswith(")"):
        return pa.list_(_ARROW[dtype[len("Array(") : -1]])
    return _ARROW[dtype]


def source_schema(spec: FeatureViewSpec) -> pa.Schema:
    """Entity key, ``event_timestamp``, ``created`` and the view's fields."""
    return pa.schema(
        [
            (spec.entity, pa.string()),
            (EVENT_TIMESTAMP, TIMESTAMP),
            (CREATED, TIMESTAMP),
            *[(f.name, arrow_type(f.dtype)) for f in spec.fields],
        ]
    )


def _scalar_values(dtype: str, n: int, rng: np.random.Generator) -> list:
    if dtype in ("Int64", "UnixTimestamp"):
        return rng.integers(0, 1_000, n).tolist()
    if dtype in ("Float32", "Float64"):
        return np.round(rng.random(n) * 100, 3).tolist()
    if dtype == "Bool":
        return (rng.random(n) < 0.5).tolist()
    return [f"v{k}" for k in rng.integers(0, 50, n)]


def _column(field: FeatureField, n: int, rng: np.random.Generator) -> list:
    if not field.dtype.startswith("Array("):
        return _scalar_values(field.dtype, n, rng)
    inner = field.dtype[len("Array(") : -1]
    lengths = rng.integers(0, MAX_LIST_LENGTH + 1, n)
    flat = _scalar_values(inner, int(lengths.sum()), rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[offsets[i] : offsets[i + 1]] for i in range(n)]


def synthetic_rows(
    spec: FeatureViewSpec, entity_ids: Sequence[str], snapshot: datetime, rng: np.random.Generator
) -> pa.Table:
    """One random row per entity with ``event_timestamp = created = snapshot`` (a tz-aware datetime)."""
    n = len(entity_ids)
    stamps = pa.array([snapshot] * n, type=TIMESTAMP)
    columns = [pa.array(list(entity_ids), pa.string()), stamps, stamps]
    columns += [pa.array(_column(f, n, rng), arrow_type(f.dtype)) for f in spec.fields]
    return pa.Table.from_arrays(columns, schema=source_schema(spec))


def write_source(paths: DataPaths, spec: FeatureViewSpec, table: pa.Table) -> Path:
    """Add ``table`` (columns as ``source_schema(spec)``) as one more Spark-style part file under
    ``paths.feature_source(spec.name)``."""
    if table.schema.names != source_schema(spec).names:
        raise ValueError(f"{spec.name}: columns {table.schema.names} != {source_schema(spec).names}")
    directory = paths.feature_source(spec.name)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{len(list(directory.glob('part-*'))):05d}-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(table, directory / name, compression="snappy")
    (directory / f".{name}.crc").write_bytes(b"")
    (directory / "_SUCCESS").touch()
    return directory
