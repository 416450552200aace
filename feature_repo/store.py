"""The feature-store jobs: open a store, register the definitions, materialize offline -> online.

``materialize_incremental`` is what the nightly DAG calls with the run's logical date as ``end``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast import FeatureStore, FeatureView
from feast.repo_config import RepoConfig

from common.paths import DataPaths
from common.settings import env
from feature_repo.config import OnlineStore, repo_config, store_dir
from feature_repo.definitions import Definitions, build_definitions

log = logging.getLogger(__name__)

WRITE_BATCH = 10_000  # rows per online-store write: bounded memory for the protobuf conversion
CHUNK_ENTITIES = 100_000  # entities read at once by materialization: bounded memory at any number of users


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


def latest_rows(view: FeatureView, start: datetime, end: datetime, chunk_entities: int = CHUNK_ENTITIES,
                part: int = 0, parts: int = 1) -> Iterator[pd.DataFrame]:
    """The latest row per entity of ``view``'s Parquet offline source with ``start <= event_timestamp <=
    end`` (ties broken by the created timestamp): what Feast's materialization would load, in chunks of
    at most ``chunk_entities`` entities (contiguous key ranges), so memory is bounded whatever the number
    of users. Only the key column of the window is read whole, to cut the ranges; each chunk is one more
    filtered scan of the source. With ``parts`` > 1 the ranges are at most a ``parts``-th of the entities
    and this yields every ``parts``-th of them from ``part`` on: the share of one of ``parts`` writers."""
    source = view.batch_source
    timestamp, created = source.timestamp_field, source.created_timestamp_column
    dataset = ds.dataset(source.path, format="parquet")
    window = (ds.field(timestamp) >= pa.scalar(start, pa.timestamp("us", "UTC"))) & (
        ds.field(timestamp) <= pa.scalar(end, pa.timestamp("us", "UTC")))
    keys = list(view.join_keys)
    order = [*keys, timestamp, *([created] if created else [])]
    if len(keys) != 1:  # no view here has a composite key; keep such a view whole rather than guess its ranges
        ranges: list[pa.Expression | None] = [None]
    else:
        key = ds.field(keys[0])
        entities = pc.unique(dataset.to_table(columns=keys, filter=window).column(0)).sort()
        size = max(1, min(chunk_entities, math.ceil(len(entities) / parts)))
        ranges = [(key >= entities[i]) & (key <= entities[min(i + size, len(entities)) - 1])
                  for i in range(0, len(entities), size)]
    for entity_range in ranges[part::parts]:
        frame = dataset.to_table(filter=window if entity_range is None else window & entity_range).to_pandas()
        yield frame.sort_values(order).drop_duplicates(keys, keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class Written:
    """What one writer loaded: rows, chunks, and its seconds reading the source and writing the store."""

    rows: int = 0
    chunks: int = 0
    reading: float = 0.0
    writing: float = 0.0

    def __add__(self, other: Written) -> Written:
        return Written(self.rows + other.rows, self.chunks + other.chunks, self.reading + other.reading,
                       self.writing + other.writing)


def write_part(store: FeatureStore, view: FeatureView, start: datetime, end: datetime, chunk_entities: int,
               part: int = 0, parts: int = 1) -> Written:
    """Write writer ``part`` of ``parts``'s chunks of ``view`` (:func:`latest_rows`) to the online store,
    ``WRITE_BATCH`` rows per call."""
    done = Written()
    chunks = latest_rows(view, start, end, chunk_entities, part, parts)
    while True:
        clock = time.perf_counter()
        chunk = next(chunks, None)
        reading = time.perf_counter() - clock
        if chunk is None:
            return done + Written(reading=reading)
        clock = time.perf_counter()
        for offset in range(0, len(chunk), WRITE_BATCH):
            store.write_to_online_store(view.name, chunk.iloc[offset:offset + WRITE_BATCH])
        done += Written(len(chunk), 1, reading, time.perf_counter() - clock)


_child_store: FeatureStore | None = None  # a writer process's store, opened once by its pool's initializer


def _open_child_store(config: RepoConfig) -> None:
    global _child_store
    _child_store = FeatureStore(config=config)


def _write_part_in_child(view_name: str, start: datetime, end: datetime, chunk_entities: int, part: int,
                         parts: int) -> Written:
    assert _child_store is not None, "a writer process starts with _open_child_store"
    return write_part(_child_store, _child_store.get_feature_view(view_name), start, end, chunk_entities, part, parts)


def takes_concurrent_writers(store: FeatureStore) -> bool:
    """Whether the online store takes writes from several processes at once (Redis; SQLite locks the file)."""
    return store.config.online_store.type == "redis"


def writers_for(store: FeatureStore, writers: int | None = None) -> int:
    """Materialization's writer processes: ``writers``, else ``RECSYS_MATERIALIZE_WRITERS`` (default 1: the
    writes are CPU-bound, so more only pay on free cores, and the night may run other tasks beside).
    More than one is refused for a store that takes one writer at a time (SQLite)."""
    named = "writers" if writers is not None else "RECSYS_MATERIALIZE_WRITERS"
    writers = env().materialize_writers if writers is None else writers
    if writers > 1 and not takes_concurrent_writers(store):
        raise ValueError(f"{named}={writers}, but the {store.config.online_store.type} online store takes one "
                         "writer at a time: use 1 (or the Redis online store)")
    return writers


def materialize(store: FeatureStore, start: datetime, end: datetime, views: list[str] | None = None,
                chunk_entities: int = CHUNK_ENTITIES, writers: int | None = None) -> dict[str, int]:
    """Load the latest row per entity with ``start <= event_timestamp <= end`` into the online store and
    record the interval in the registry, as ``FeatureStore.materialize`` does; returns rows per view.

    The offline read is pyarrow's, with the time filter pushed down, instead of Feast's file offline
    store: that one goes through dask, which tokenises every list-valued column by pickling it, and it
    reads the whole source whatever the window -- measured on the demo world (45,400 users, 9
    snapshots): over 20 minutes per night under load, growing with every snapshot. It reads
    ``chunk_entities`` entities at a time (:func:`latest_rows`) and writes ``WRITE_BATCH`` rows per call,
    so memory does not grow with the number of users. The write is Feast's own
    (``write_to_online_store``, the path pushes take), so every online store works unchanged (Redis:
    one pipeline per call). ``writers`` processes (default :func:`writers_for`) write disjoint entity
    ranges side by side; each holds one chunk at a time. Naive datetimes are taken as UTC. ``views``
    restricts the run to those view names.
    """
    start, end = _utc(start), _utc(end)
    writers = writers_for(store, writers)
    written: dict[str, int] = {}
    pool = None if writers == 1 else ProcessPoolExecutor(writers, mp_context=get_context("spawn"),
                                                         initializer=_open_child_store, initargs=(store.config,))
    try:
        for view in store.list_feature_views():
            if views is not None and view.name not in views:
                continue
            clock = time.perf_counter()
            if pool is None:
                done = write_part(store, view, start, end, chunk_entities)
            else:
                futures = [pool.submit(_write_part_in_child, view.name, start, end, chunk_entities, part, writers)
                           for part in range(writers)]
                done = sum((f.result() for f in futures), Written())
            seconds = time.perf_counter() - clock
            store.registry.apply_materialization(view, store.project, start, end)
            written[view.name] = done.rows
            log.info("materialized %s: %d rows in %d chunks by %d writer(s) in %.1f s (%.0f rows/s; reading %.1f s, "
                     "writing %.1f s summed over writers)", view.name, done.rows, done.chunks, writers, seconds,
                     done.rows / seconds if seconds > 0 else 0.0, done.reading, done.writing)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return written


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
