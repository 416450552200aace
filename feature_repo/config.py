"""Feature-store configuration per data root: SQLite (local default) or Redis online store.

Every path follows the data root (``RECSYS_DATA_DIR``), so the config is built in Python;
``feature_store.yaml`` / ``feature_store.redis.yaml`` are the same settings for the ``feast`` CLI with
the default ``./data`` root (a test keeps them in step). Each online-store kind gets its own registry
under ``<data>/feast/<kind>/`` because the registry records what was materialized into that store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from feast import RepoConfig

from common.paths import DataPaths

PROJECT = "recsys"
REPO_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "127.0.0.1:6379"
REGISTRY_CACHE_TTL_SECONDS = 60
OnlineStore = Literal["sqlite", "redis"]


def store_dir(paths: DataPaths, online: OnlineStore) -> Path:
    """``<data>/feast/<online>/``: the registry (and the SQLite database) of one online store."""
    return paths.root / "feast" / online


def redis_connection_string(redis_url: str | None) -> str:
    """Feast's ``host:port[,opt=val...]`` form; accepts ``redis://host:port`` too.

    Defaults to ``RECSYS_REDIS_URL``, then ``127.0.0.1:6379``.
    """
    url = redis_url or os.environ.get("RECSYS_REDIS_URL") or DEFAULT_REDIS_URL
    return url.removeprefix("redis://").rstrip("/")


def repo_config(paths: DataPaths, online: OnlineStore = "sqlite", redis_url: str | None = None) -> RepoConfig:
    """The ``RepoConfig`` of the store over ``paths`` with the given online store."""
    directory = store_dir(paths, online)
    if online == "sqlite":
        online_store: dict[str, str] = {"type": "sqlite", "path": str(directory / "online_store.db")}
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
