"""Fixtures of the feature-store tests: offline sources, a materialized SQLite store, a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from feast_testdata import DAY1, DAY2, Offline, build_offline

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from common.paths import DataPaths
from feature_repo.redis_server import local_redis, redis_server_binary


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
    """A real redis-server on a free loopback port for this module; skipped only if not installed."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (make setup installs it)")
    with local_redis() as url:
        yield url
