"""Fixtures of the feature-store tests: offline sources shaped like Spark's output (two daily
snapshots), a SQLite store with both materialized, and a real Redis server.

Test modules get the data set and its constants through the ``offline`` fixture (with
``--import-mode=importlib`` they cannot import helper modules beside them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from common.features import BATCH_VIEWS, USER_ID, FeatureViewSpec
from common.paths import DataPaths
from feature_repo.redis_server import local_redis
from feature_repo.sample_data import synthetic_rows, write_source

DAY1 = datetime(2025, 3, 3, 6, tzinfo=UTC)  # older snapshot
DAY2 = DAY1 + timedelta(days=1)  # latest snapshot


@dataclass(frozen=True)
class Offline:
    paths: DataPaths
    old: dict[str, dict[str, dict]]  # view -> entity id -> row of the older snapshot
    new: dict[str, dict[str, dict]]  # view -> entity id -> row of the latest snapshot
    day1: datetime = DAY1
    day2: datetime = DAY2
    users: tuple[str, ...] = ("r_u1", "r_u2", "b_u3")  # b_u3 has no row in the latest snapshot
    items: tuple[str, ...] = ("r_i1", "r_i2", "b_i3")  # b_i3 likewise
    user_specs: tuple[FeatureViewSpec, ...] = field(
        default=tuple(s for s in BATCH_VIEWS if s.entity == USER_ID)
    )
    item_specs: tuple[FeatureViewSpec, ...] = field(
        default=tuple(s for s in BATCH_VIEWS if s.entity != USER_ID)
    )

    def latest(self, view: str, entity_id: str) -> dict:
        """What the online store must serve after materializing both snapshots."""
        return self.new[view].get(entity_id) or self.old[view][entity_id]

    @staticmethod
    def assert_row_equal(served: dict, expected: dict, names: list[str]) -> None:
        """Float32 features are compared at float32 precision, everything else exactly."""
        for name in names:
            assert Offline.same_value(served[name], expected[name]), (name, served[name], expected[name])

    @staticmethod
    def same_value(got: object, want: object) -> bool:
        """``got == want``, at float32 precision for floats and lists of floats."""
        if isinstance(want, float):
            return bool(np.float32(got) == np.float32(want))
        if isinstance(want, list) and want and isinstance(want[0], float):
            return bool(np.array_equal(np.float32(got), np.float32(want)))
        return bool(got == want)


def build_offline(paths: DataPaths) -> Offline:
    """Two part files per view: the older snapshot for all ids, the latest for all but the last id."""
    rng = np.random.default_rng(7)
    old: dict[str, dict[str, dict]] = {}
    new: dict[str, dict[str, dict]] = {}
    for spec in BATCH_VIEWS:
        ids = list(Offline.users if spec.entity == USER_ID else Offline.items)
        older, latest = synthetic_rows(spec, ids, DAY1, rng), synthetic_rows(spec, ids[:-1], DAY2, rng)
        for table in (older, latest):
            write_source(paths, spec, table)
        old[spec.name] = {row[spec.entity]: row for row in older.to_pylist()}
        new[spec.name] = {row[spec.entity]: row for row in latest.to_pylist()}
    return Offline(paths, old, new)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Offline:
    return build_offline(DataPaths(tmp_path_factory.mktemp("feast") / "data"))


@pytest.fixture(scope="module")
def sqlite_store(offline: Offline):
    """The SQLite store with both snapshots materialized."""
    from feature_repo.store import apply, get_store, materialize

    store = get_store(offline.paths)
    apply(store, offline.paths)
    materialize(store, DAY1 - timedelta(days=1), DAY2 + timedelta(days=1))
    return store


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port for this module (``make setup`` installs it: without
    it these tests fail, they are not skipped)."""
    with local_redis() as url:
        yield url
