"""Reading import files (CSV or Parquet) into records ready for the contract validators.

Each row comes back twice: ``raw`` -- exactly as it was in the file (for the dead-letter store) --
and ``typed`` -- what is validated. Parquet rows are already typed. CSV cells are text, typed from
the contract's Arrow schema:

* empty cell -> absent;
* integer / float columns -> numbers (``"3"`` -> 3, ``"4.5"`` -> 4.5); text that is not a finite
  number stays text, so the validator rejects it as ``wrong_type``;
* timestamp columns -> epoch seconds/milliseconds when the text is a number, else the ISO-8601 text;
* boolean columns -> ``true/false``, ``1/0``, ``yes/no`` (any case);
* list columns (``excludes``, ``products_held``) -> split on ``|``.

A CSV row with more cells than the header is returned with ``raw["__extra__"]`` holding the surplus;
the importer rejects it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

LIST_SEPARATOR = "|"
EXTRA_CELLS = "__extra__"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class Row:
    raw: dict[str, Any]
    typed: dict[str, Any]


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _finite(text: str) -> Any:
    """``float(text)`` when that is a finite number, else the text itself."""
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _integer(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _finite(text)


def _boolean(text: str) -> Any:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return text


def type_cell(text: str, kind: pa.DataType | None) -> Any:
    """One CSV cell -> the Python value the validator expects for a column of Arrow type ``kind``."""
    if kind is None or pa.types.is_string(kind):
        return text
    if pa.types.is_integer(kind):
        return _integer(text)
    if pa.types.is_floating(kind) or pa.types.is_timestamp(kind):
        return _finite(text)
    if pa.types.is_boolean(kind):
        return _boolean(text)
    if pa.types.is_list(kind):
        return [part.strip() for part in text.split(LIST_SEPARATOR) if part.strip()]
    raise TypeError(f"no CSV rule for Arrow type {kind}")


def _csv_rows(path: Path, schema: pa.Schema) -> Iterator[Row]:
    types = {f.name: f.type for f in schema}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for raw in csv.DictReader(fh, restkey=EXTRA_CELLS):
            typed = {
                key: type_cell(value.strip(), types.get(key))
                for key, value in raw.items()
                if key != EXTRA_CELLS and value is not None and value.strip() != ""
            }
            yield Row(raw=dict(raw), typed=typed)


def _parquet_rows(path: Path) -> Iterator[Row]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        for record in batch.to_pylist():
            yield Row(raw=record, typed=record)


def read_rows(path: Path, schema: pa.Schema) -> Iterator[Row]:
    """The rows of a CSV or Parquet file; ``schema`` (a contract Arrow schema) types CSV cells."""
    return _csv_rows(path, schema) if file_format(path) == "csv" else _parquet_rows(path)
