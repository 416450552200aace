"""Writing event tables that span more dates than one ``pyarrow.dataset.write_dataset`` call allows.

``common.lake.write_events`` hands the whole table to ``write_dataset``, whose default
``max_partitions`` is 1024; MovieLens alone covers 3,840 distinct days. This helper calls it once
per slice of at most :data:`MAX_DATES_PER_WRITE` dates, which keeps both write modes correct:
``replace_partitions=True`` only deletes the partitions of the slice being written, and append mode
writes each date's file once.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from common.lake import write_events
from common.paths import DataPaths

MAX_DATES_PER_WRITE = 1000  # below pyarrow's default max_partitions (1024)


def write_events_by_date_slices(
    table: pa.Table,
    paths: DataPaths,
    basename: str,
    replace_partitions: bool,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Write ``table`` (a contract event table, UTC timestamps) through ``write_events``; returns rows written."""
    if table.num_rows == 0:
        return 0
    dates = pc.strftime(table["timestamp"].cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%d")
    unique = sorted(pc.unique(dates).to_pylist())
    written = 0
    for start in range(0, len(unique), MAX_DATES_PER_WRITE):
        chunk = pa.array(unique[start : start + MAX_DATES_PER_WRITE])
        part = table.filter(pc.is_in(dates, value_set=chunk))
        written += write_events(part, paths, basename=basename, replace_partitions=replace_partitions)
        if progress:
            progress(f"  wrote {written:,}/{table.num_rows:,} events ({min(start + len(chunk), len(unique))}/{len(unique)} days)")
    return written
