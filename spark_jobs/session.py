"""The SparkSession every job builds (local by default; ``--master`` or spark-submit for a cluster).

Sizing. Shuffle partitions follow the job's input: one per :data:`BYTES_PER_PARTITION` of the Parquet it
reads (at least :data:`MIN_PARTITIONS`, at most :data:`MAX_PARTITIONS`), and adaptive query execution
coalesces the ones that turn out small, so a demo lake runs on a few partitions and a billion-event lake
on thousands. A deployment fixes the number with ``RECSYS_SPARK_SHUFFLE_PARTITIONS`` and the driver's
memory with ``RECSYS_SPARK_DRIVER_MEMORY`` (default 4g; spark-submit's ``--driver-memory`` wins).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import env

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


BYTES_PER_PARTITION = 64 * 1024 * 1024  # compressed Parquet input per shuffle partition (it grows in memory)
MIN_PARTITIONS, MAX_PARTITIONS = 8, 4000


def input_bytes(paths: Iterable[Path]) -> int:
    """The size of every file under ``paths`` (missing paths count 0)."""
    total = 0
    for root in map(Path, paths):
        files = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


def shuffle_partitions_for(size_bytes: int) -> int:
    """Shuffle partitions for an input of ``size_bytes``, unless ``RECSYS_SPARK_SHUFFLE_PARTITIONS`` fixes it."""
    fixed = env().spark_shuffle_partitions
    if fixed is not None:
        return fixed
    return min(MAX_PARTITIONS, max(MIN_PARTITIONS, math.ceil(size_bytes / BYTES_PER_PARTITION)))


def build_session(app_name: str, master: str | None = None, shuffle_partitions: int | None = None) -> SparkSession:
    """A SparkSession with UTC time and the venv's Python on the executors.

    Under ``spark-submit`` the master comes from the command line (``master=None`` keeps it).
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # read back as UTC by pyarrow/Feast
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions or shuffle_partitions_for(0)))
        .config("spark.sql.adaptive.enabled", "true")  # coalesces small shuffle partitions, splits skewed joins
        .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
        .config("spark.driver.memory", env().spark_driver_memory)
    )
    if master:
        builder = builder.master(master)
    elif "spark.master" not in os.environ.get("SPARK_CONF", "") and not os.environ.get("SPARK_ENV_LOADED"):
        builder = builder.master(env().spark_master)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def job_session(app_name: str, master: str | None = None, inputs: Iterable[Path] = ()) -> Iterator[SparkSession]:
    """The session a job's ``main`` runs in: the caller's active session if there is one (tests, the CLI
    running several jobs), else a new one, sized for the Parquet under ``inputs``, that is stopped when
    the job ends."""
    from pyspark.sql import SparkSession

    existing = SparkSession.getActiveSession()
    session = existing or build_session(app_name, master, shuffle_partitions_for(input_bytes(inputs)))
    try:
        yield session
    finally:
        if existing is None:
            session.stop()
