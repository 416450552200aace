"""Reading and writing the local event lake (Parquet, Hive-partitioned by domain and date).

The same layout is read by Spark (``spark.read.parquet(paths.events)`` discovers ``domain`` and
``date`` as partition columns) and written here by the simulator and the import command.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from common.lake_schemas import CATALOG_ARROW_SCHEMA, EVENT_ARROW_SCHEMA, USER_ARROW_SCHEMA
from common.paths import DataPaths

_PARTITIONING = ds.partitioning(pa.schema([("domain", pa.string()), ("date", pa.string())]), flavor="hive")


def _conform(data: pa.Table | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Cast a frame/table to the contract's Arrow schema (missing optional columns become null)."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(len(table), type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def write_events(
    data: pa.Table | pd.DataFrame, paths: DataPaths, basename: str = "part-{i}", replace_partitions: bool = True
) -> int:
    """Write events to ``lake/events/domain=*/date=*/``; returns the number of rows written.

    ``replace_partitions=True`` replaces the partitions being written (idempotent regeneration);
    ``False`` adds files beside existing ones (use a unique ``basename`` per batch).
    """
    table = _conform(data, EVENT_ARROW_SCHEMA)
    if table.num_rows == 0:
        return 0
    date = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    table = table.append_column("date", date)
    paths.events.mkdir(parents=True, exist_ok=True)
    ds.write_dataset(
        table,
        paths.events,
        format="parquet",
        partitioning=_PARTITIONING,
        basename_template=basename + ".parquet",
        existing_data_behavior="delete_matching" if replace_partitions else "overwrite_or_ignore",
        max_rows_per_group=256_000,
        max_partitions=100_000,
    )
    return table.num_rows


def read_events(
    paths: DataPaths, domain: str, columns: list[str] | None = None, event_types: Iterable[str] | None = None,
    since: str | None = None, until: str | None = None, users: Collection[str] | None = None,
) -> pd.DataFrame:
    """One domain's events as a DataFrame: only ``columns``, only ``event_types`` (all when None), only the
    partitions ``since <= date < until`` (``YYYY-MM-DD``; open when None), only the rows of ``users`` (all
    when None). The filters are pushed down: only those files and columns are read, and rows are filtered
    batch by batch, so memory follows the rows returned, not the lake."""
    root = paths.events / f"domain={domain}"
    wanted = list(columns or EVENT_ARROW_SCHEMA.names)
    if not root.exists():
        return pd.DataFrame(columns=wanted)
    dataset = ds.dataset(root, format="parquet", partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"))
    conditions = []
    if event_types is not None:
        conditions.append(ds.field("event_type").isin(sorted(set(event_types))))
    if since is not None:
        conditions.append(ds.field("date") >= since)
    if until is not None:
        conditions.append(ds.field("date") < until)
    if users is not None:
        conditions.append(ds.field("user_id").isin(pa.array(sorted(set(map(str, users))), pa.string())))
    row_filter = None
    for condition in conditions:
        row_filter = condition if row_filter is None else row_filter & condition
    table = dataset.to_table(columns=[c for c in wanted if c != "domain"], filter=row_filter)
    # nullable integers stay integers (position, quantity), so frames re-validate under the strict contract
    frame = table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get)
    if "domain" in wanted:  # a partition column: stored in the path, not in the files
        frame.insert(min(wanted.index("domain"), len(frame.columns)), "domain", domain)
    return frame


def _write_single(data: pa.Table | pd.DataFrame, schema: pa.Schema, path: Path) -> int:
    table = _conform(data, schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table.num_rows


def write_catalog(data: pa.Table | pd.DataFrame, paths: DataPaths, domain: str) -> int:
    return _write_single(data, CATALOG_ARROW_SCHEMA, paths.catalog(domain))


def write_users(data: pa.Table | pd.DataFrame, paths: DataPaths, domain: str) -> int:
    return _write_single(data, USER_ARROW_SCHEMA, paths.users(domain))


def read_catalog(paths: DataPaths, domain: str) -> pd.DataFrame:
    return pq.read_table(paths.catalog(domain)).to_pandas()


def read_users(paths: DataPaths, domain: str) -> pd.DataFrame:
    return pq.read_table(paths.users(domain)).to_pandas()


def lake_domains(paths: DataPaths) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in paths.events.glob("domain=*")) if paths.events.exists() else []


def event_partitions(paths: DataPaths, domain: str) -> Iterable[str]:
    return sorted(p.name.split("=", 1)[1] for p in (paths.events / f"domain={domain}").glob("date=*"))
