"""Feature-store configuration per data root: SQLite (local default) or Redis online store.

Every path follows the data root (``RECSYS_DATA_DIR``), so the config is built in Python;
``feature_store.yaml`` / ``feature_store.redis.yaml`` are the same settings for the ``feast`` CLI with
the default ``./data`` root (a test keeps them in step). Each online-store kind gets its own registry
under ``<data>/feast/<kind>/`` because the registry records what was materialized into that store.

Both stores are set up to survive contention and stalls: SQLite is :mod:`feature_repo.sqlite_store`
(WAL + busy timeout: a writer beside readers), and the Redis connection gets socket timeouts and no
client-side retries (:func:`redis_connection_string`), so a stalled server fails a read in bounded
time and the caller (serving's circuit breaker) decides what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from feast import RepoConfig

from common.paths import DataPaths
from common.settings import env
from feature_repo.sqlite_store import STORE_TYPE as SQLITE_STORE_TYPE

PROJECT = "recsys"
REPO_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "127.0.0.1:6379"
REGISTRY_CACHE_TTL_SECONDS = 60
OnlineStore = Literal["sqlite", "redis"]
# Options added to the Redis connection string unless it sets them (Feast passes them to redis-py).
# A read of a stalled server fails after the socket timeout instead of pinning its thread forever;
# ``retry=null`` drops redis-py's default retries (3, exponential backoff from 1 s up to 10 s), which
# would hold a failing read for seconds. Pushes retry on their own (``beam_jobs.feast_io``).
REDIS_OPTIONS: dict[str, str] = {"socket_connect_timeout": "0.5", "socket_timeout": "0.5", "retry": "null"}


def store_dir(paths: DataPaths, online: OnlineStore) -> Path:
    """``<data>/feast/<online>/``: the registry (and the SQLite database) of one online store."""
    return paths.root / "feast" / online


def redis_connection_string(redis_url: str | None) -> str:
    """Feast's ``host:port[,opt=val...]`` form, with :data:`REDIS_OPTIONS` where the URL does not set
    them; accepts ``redis://host:port`` too.

    Defaults to ``RECSYS_REDIS_URL``, then ``127.0.0.1:6379``.
    """
    url = (redis_url or env().redis_url or DEFAULT_REDIS_URL).removeprefix("redis://").rstrip("/")
    given = {part.split("=", 1)[0].strip() for part in url.split(",") if "=" in part}
    return ",".join([url, *(f"{k}={v}" for k, v in REDIS_OPTIONS.items() if k not in given)])


def repo_config(paths: DataPaths, online: OnlineStore = "sqlite", redis_url: str | None = None) -> RepoConfig:
    """The ``RepoConfig`` of the store over ``paths`` with the given online store."""
    directory = store_dir(paths, online)
    if online == "sqlite":
        online_store: dict[str, str] = {"type": SQLITE_STORE_TYPE, "path": str(directory / "online_store.db")}
    elif online == "redis":
        online_store = {"type": "redis", "connection_string": redis_connection_string(redis_url)}
    else:
        raise ValueError(f"unknown online store {online!r} (sqlite or redis)")
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={
            "registry_type": "file",
            "path": str(directory / "registry.db"),
            "cache_ttl_seconds": REGISTRY_CACHE_TTL_SECONDS,
        },
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=REPO_DIR,
    )
