"""The SparkSession every job builds (local by default; ``--master`` or spark-submit for a cluster)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import common  # noqa: F401

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions or 8))
        .config("spark.driver.memory", os.environ.get("RECSYS_SPARK_DRIVER_MEMORY", "4g"))
    )
    if master:
        builder = builder.master(master)
    elif "spark.master" not in os.environ.get("SPARK_CONF", "") and not os.environ.get("SPARK_ENV_LOADED"):
        builder = builder.master(os.environ.get("RECSYS_SPARK_MASTER", "local[*]"))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def job_session(app_name: str, master: str | None = None) -> Iterator[SparkSession]:
    """The session a job's ``main`` runs in: the caller's active session if there is one (tests, the CLI
    running several jobs), else a new one that is stopped when the job ends."""
    from pyspark.sql import SparkSession

    existing = SparkSession.getActiveSession()
    session = existing or build_session(app_name, master)
    try:
        yield session
    finally:
        if existing is None:
            session.stop()
