"""The Airflow test harness: an Airflow home with its SQLite metadata DB in a temporary directory.

Airflow reads its configuration when first imported, so the environment is set in
``pytest_configure`` (when this conftest loads, before any test imports ``airflow``); the DB is
migrated once per session by the ``airflow_db`` fixture (``airflow db migrate``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.airflow_env import DAGS_FOLDER, configure

_HOME: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    home = Path(tempfile.mkdtemp(prefix="recsys-airflow-"))
    _HOME.append(home)
    configure(home, spark_master="local[2]")


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _HOME:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _HOME[0]


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The migrated metadata DB of the session's Airflow home."""
    from orchestration.airflow_env import migrate

    migrate()
    return airflow_home / "airflow.db"


@pytest.fixture(scope="session")
def dagbag() -> Iterator[tuple[object, float]]:
    """The DAG folder parsed once, with the seconds the parse took."""
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    yield bag, time.perf_counter() - started
