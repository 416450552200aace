"""Fixtures of the Spark job tests: the hand-built world of ``world.py`` written to a lake."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pyspark.sql import DataFrame

from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from spark_jobs.jobs import days_between
from spark_jobs.lake_io import read_catalog, read_raw_events, read_users
import spark_world as world


@dataclass(frozen=True)
class World:
    paths: DataPaths
    events: DataFrame
    catalog: DataFrame
    users: DataFrame


def write_world(paths: DataPaths) -> None:
    """The world's raw events, catalogs and users, written with the shared lake writers."""
    write_events(world.events(), paths)
    catalog, users = world.catalog(), world.users()
    for domain in ("retail", "banking"):
        write_catalog(catalog[catalog["domain"] == domain], paths, domain)
        write_users(users[users["domain"] == domain], paths, domain)


@pytest.fixture(scope="module")
def world_lake(spark, tmp_path_factory) -> World:
    """The world in a lake of its own (module-scoped: the feature tests share one computation)."""
    paths = DataPaths(tmp_path_factory.mktemp("world") / "data")
    write_world(paths)
    dates = days_between(world.ts(1, 0).date(), world.ts(11, 0).date())
    return World(paths, read_raw_events(spark, paths, dates), read_catalog(spark, paths), read_users(spark, paths))
