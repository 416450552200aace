"""Shared fixtures: an isolated data/artifact root per test, one SparkSession per test session, read-only
worlds built once per run for every pytest-xdist worker (:class:`BuiltOnce`), and the tiny world after its
first night, built once per run for the tests that need a world with live releases."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable
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


class BuiltOnce:
    """Read-only worlds built once per test run, whichever pytest-xdist worker asks first, in a directory
    every worker sees: ``make test`` runs the files on two workers, and a session fixture would otherwise
    be built once per worker that runs a file using it (the Spark pipeline world, for one, takes ~30 s
    standing alone). A worker asking while another builds waits on the build's lock; a build that failed (or whose
    worker died) is built again by the next one asking, so its error is reported where it happens."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "built-once"

    def get(self, name: str, make: Callable[[Path], None]) -> Path:
        """The directory ``name``, filled by ``make(directory)`` unless a worker did it in this run; the
        tests must not change it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        built = self.directory / name
        with (self.directory / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a dying worker exits
            if not (built / "BUILT").exists():
                shutil.rmtree(built, ignore_errors=True)
                built.mkdir()
                make(built)
                (built / "BUILT").touch()
        return built


def _workers_directory(factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The directory every pytest-xdist worker of this run sees (the base temp without xdist)."""
    base = factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def built_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> BuiltOnce:
    return BuiltOnce(_workers_directory(tmp_path_factory, worker_id))


class SharedNight:
    """The ``tiny`` world (seed 7) after the nightly DAG's first night, built once per test run by
    ``tests/dags/test_nightly_e2e.py`` and copied by the tests that need such a world
    (``tests/loop/test_closed_loop.py``), in a directory every pytest-xdist worker sees. The builder's file
    is ordered before its readers' (:func:`pytest_collection_modifyitems`), so a reader on another worker
    waits for ``DONE`` (or ``FAILED``); when the builder is not in the run (a file run alone) or failed,
    :meth:`wait` returns None and the reader makes its own world."""

    def __init__(self, directory: Path, built_in_this_run: bool) -> None:
        self.directory = directory / "tiny-night"
        self.built_in_this_run = built_in_this_run

    def build(self, make: Callable[[Path], None]) -> Path:
        """``make(directory)``, then ``DONE``; the built directory."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        try:
            make(self.directory)
        except BaseException:
            (self.directory / "FAILED").touch()
            raise
        (self.directory / "DONE").touch()
        return self.directory

    def wait(self, timeout_s: float = 1800.0) -> Path | None:
        """The built directory once it is built, or None if nothing builds it in this run."""
        from common.polling import wait_until

        if not self.built_in_this_run:
            return None
        wait_until(lambda: any((self.directory / name).exists() for name in ("DONE", "FAILED")), timeout_s,
                   "the shared tiny night", poll=1.0)
        return self.directory if (self.directory / "DONE").exists() else None


_BUILDS_SHARED_NIGHT: list[bool] = []  # set at collection: a test of this run builds it


@pytest.fixture(scope="session")
def shared_night(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> SharedNight:
    return SharedNight(_workers_directory(tmp_path_factory, worker_id), any(_BUILDS_SHARED_NIGHT))


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only the tests that will run count
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding ``slow`` tests first: ``make test`` runs two pytest-xdist workers, each taking a whole
    file at a time (``--dist loadfile``, so no module fixture is built twice), and the longest runs should
    start at once while the short files fill in beside them; the file that builds the shared night goes
    first. A file that copies the shared night (and does not build it) goes a fifth of the way into the
    rest, so that the night is built by the time it starts instead of holding a worker idle."""
    def uses(item: pytest.Item) -> bool:
        return "shared_night" in getattr(item, "fixturenames", ())

    def readers(item: pytest.Item) -> bool:
        return uses(item) and "airflow_db" not in item.fixturenames

    _BUILDS_SHARED_NIGHT.append(any(uses(item) and not readers(item) for item in items))

    slow_files = {item.path for item in items if item.get_closest_marker("slow") and not readers(item)}
    reading = [item for item in items if readers(item)]
    building = {item.path for item in items if uses(item) and not readers(item)}
    rest = sorted((item for item in items if not readers(item)),  # the night's builder, other slow files, the rest
                  key=lambda item: (item.path not in building, item.path not in slow_files))
    first_fast = next((i for i, item in enumerate(rest) if item.path not in slow_files), len(rest))
    at = first_fast + (len(rest) - first_fast) // 5
    items[:] = rest[:at] + reading + rest[at:]
