"""Shared fixtures: an isolated data/artifact root per test, one SparkSession per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import common  # noqa: F401  (prometheus_client before feast: see common/__init__.py)
from common.paths import DataPaths

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# Spark settings for short, tiny jobs (see the file), read by every session and spark-submit the tests start
os.environ.setdefault("SPARK_CONF_DIR", str(Path(__file__).parent / "spark-conf"))


@pytest.fixture
def data_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataPaths:
    """A fresh, empty data root; RECSYS_DATA_DIR/RECSYS_ARTIFACTS_DIR point into tmp_path."""
    root = tmp_path / "data"
    monkeypatch.setenv("RECSYS_DATA_DIR", str(root))
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return DataPaths(root)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test session (start-up costs ~5 s)."""
    from spark_jobs.session import build_session

    session = build_session("recsys-tests", master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding ``slow`` tests first: ``make test`` runs two pytest-xdist workers, each taking a whole
    file at a time (``--dist loadfile``, so no module fixture is built twice), and the longest runs should
    start at once while the short files fill in beside them."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
