"""The feature-store jobs: open a store, register the definitions, materialize offline -> online.

``materialize_incremental`` is what the nightly DAG calls with the run's logical date as ``end``.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from datetime import UTC, datetime

from feast import FeatureStore

from common.paths import DataPaths
from feature_repo.config import OnlineStore, repo_config, store_dir
from feature_repo.definitions import Definitions, build_definitions


def get_store(
    paths: DataPaths | None = None, online: OnlineStore = "sqlite", redis_url: str | None = None
) -> FeatureStore:
    """A ``FeatureStore`` over ``paths`` (default: ``RECSYS_DATA_DIR``) with a SQLite or Redis online store."""
    paths = paths or DataPaths.default()
    store_dir(paths, online).mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(paths, online, redis_url))


def apply(store: FeatureStore, paths: DataPaths | None = None) -> Definitions:
    """Register every definition (sources over ``paths``) and create the online tables; idempotent."""
    definitions = build_definitions(paths or DataPaths.default())
    with warnings.catch_warnings():  # Feast flags every on-demand view as "experimental" on apply
        warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")
        store.apply(definitions.objects())
    return definitions


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def materialize(store: FeatureStore, start: datetime, end: datetime, views: list[str] | None = None) -> None:
    """Load the latest row per entity with ``start <= event_timestamp <= end`` into the online store.

    Naive datetimes are taken as UTC. ``views`` restricts the run to those view names.
    """
    store.materialize(start_date=_utc(start), end_date=_utc(end), feature_views=views)


def materialize_incremental(store: FeatureStore, end: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Materialize each view from where its last materialization ended up to ``end``.

    Unlike ``FeatureStore.materialize_incremental`` (which starts a never-materialized view at
    ``now() - ttl``), a first run starts at ``end - ttl``, so the result depends only on ``end`` (the
    DAG's logical date) and back-fills work. Views already materialized up to ``end`` are skipped.
    Returns the ``(start, end)`` window run per view.
    """
    end = _utc(end)
    by_start: dict[datetime, list[str]] = defaultdict(list)
    for view in store.list_feature_views():
        start = _utc(view.most_recent_end_time) if view.most_recent_end_time else end - view.ttl
        if start < end:
            by_start[start].append(view.name)
    windows: dict[str, tuple[datetime, datetime]] = {}
    for start, names in sorted(by_start.items()):
        materialize(store, start, end, names)
        windows.update({name: (start, end) for name in names})
    return windows
