"""Spark reads of the lake and writes of the jobs' outputs; every schema is derived from the contracts.

Partitions are picked by listing directories (``domain=*/date=*``), so a job reads only the dates it
needs and an empty lake gives an empty frame with the contract's schema instead of an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from common.features import CREATED, EVENT_TIMESTAMP, FeatureViewSpec
from common.lake_schemas import CATALOG_ARROW_SCHEMA, EVENT_ARROW_SCHEMA, USER_ARROW_SCHEMA
from common.paths import DataPaths
from spark_jobs.jobs import day_end, day_start

DATE = "date"  # the lake's date partition column (YYYY-MM-DD)
EVENT_SCHEMA: StructType = from_arrow_schema(EVENT_ARROW_SCHEMA)
LAKE_EVENT_SCHEMA: StructType = StructType([*EVENT_SCHEMA.fields, StructField(DATE, StringType())])
CATALOG_SCHEMA: StructType = from_arrow_schema(CATALOG_ARROW_SCHEMA)
USER_SCHEMA: StructType = from_arrow_schema(USER_ARROW_SCHEMA)

_FEAST_TO_SPARK: dict[str, DataType] = {
    "Int64": LongType(),
    "Float32": FloatType(),
    "Float64": DoubleType(),
    "String": StringType(),
    "Bool": BooleanType(),
    "UnixTimestamp": TimestampType(),
}


def spark_type(dtype: str) -> DataType:
    """The Spark type of a Feast dtype name (``Int64`` -> long, ``Array(Float32)`` -> array<float>, ...)."""
    if dtype.startswith("Array(") and dtype.endswith(")"):
        return ArrayType(spark_type(dtype[len("Array("):-1]))
    return _FEAST_TO_SPARK[dtype]


def view_schema(spec: FeatureViewSpec) -> StructType:
    """The offline-source schema of a feature view: entity key, timestamps, then the view's fields."""
    return StructType(
        [
            StructField(spec.entity, StringType()),
            StructField(EVENT_TIMESTAMP, TimestampType()),
            StructField(CREATED, TimestampType()),
            *(StructField(f.name, spark_type(f.dtype)) for f in spec.fields),
        ]
    )


def conform_view(frame: DataFrame, spec: FeatureViewSpec) -> DataFrame:
    """Select exactly the view's columns, cast to the Spark types of their Feast dtypes."""
    return frame.select(
        *(F.col(field.name).cast(field.dataType).alias(field.name) for field in view_schema(spec).fields)
    )


def write_view(frame: DataFrame, paths: DataPaths, spec: FeatureViewSpec) -> None:
    """Overwrite the view's Feast offline source: a directory of plain Parquet files."""
    conform_view(frame, spec).write.mode("overwrite").parquet(str(paths.feature_source(spec.name)))


def read_view(spark: SparkSession, paths: DataPaths, spec: FeatureViewSpec) -> DataFrame:
    """A view's offline source (empty, with the view's schema, if it was never written)."""
    source = paths.feature_source(spec.name)
    if not source.exists():
        return spark.createDataFrame([], view_schema(spec))
    return spark.read.schema(view_schema(spec)).parquet(str(source))


def _read_partitions(spark: SparkSession, root: Path, dirs: list[Path]) -> DataFrame:
    if not dirs:
        return spark.createDataFrame([], LAKE_EVENT_SCHEMA)
    return spark.read.schema(LAKE_EVENT_SCHEMA).option("basePath", str(root)).parquet(*map(str, dirs))


def partition_dirs(root: Path, dates: Iterable[date]) -> list[Path]:
    """The existing ``domain=*/date=<d>`` directories under ``root`` for the given dates."""
    return [p for d in sorted(set(dates)) for p in sorted(root.glob(f"domain=*/{DATE}={d.isoformat()}"))]


def read_raw_events(spark: SparkSession, paths: DataPaths, dates: Iterable[date]) -> DataFrame:
    """Raw (unvalidated) events of the given dates, with the ``domain`` and ``date`` partition columns."""
    return _read_partitions(spark, paths.events, partition_dirs(paths.events, dates))


def read_compacted_events(
    spark: SparkSession, paths: DataPaths, last: date, first: date | None = None
) -> DataFrame:
    """Compacted events of the dates ``first``..``last`` (all history up to ``last`` if ``first`` is None)."""
    root = paths.compacted_events
    dirs = [
        p for p in sorted(root.glob(f"domain=*/{DATE}=*"))
        if (first is None or first.isoformat() <= p.name.split("=", 1)[1]) and p.name.split("=", 1)[1] <= last.isoformat()
    ]
    return _read_partitions(spark, root, dirs)


def in_window(frame: DataFrame, column: str, first: date, last: date) -> DataFrame:
    """Rows whose timestamp ``column`` falls on the days ``first``..``last`` (UTC, both included)."""
    return frame.where((F.col(column) >= F.lit(day_start(first))) & (F.col(column) < F.lit(day_end(last))))


def _read_tables(spark: SparkSession, files: list[Path], schema: StructType) -> DataFrame:
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*map(str, files))


def read_catalog(spark: SparkSession, paths: DataPaths) -> DataFrame:
    """The catalogs of every domain in the lake (one frame; item ids are globally unique)."""
    return _read_tables(spark, sorted(paths.lake.glob("catalog/domain=*/catalog.parquet")), CATALOG_SCHEMA)


def read_users(spark: SparkSession, paths: DataPaths) -> DataFrame:
    """The user profiles of every domain in the lake (one frame; user ids are globally unique)."""
    return _read_tables(spark, sorted(paths.lake.glob("users/domain=*/users.parquet")), USER_SCHEMA)
