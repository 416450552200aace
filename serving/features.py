"""Request-time features: the item-feature cache, the user's context and the ranker's input batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from common.cross_features import CROSS_FEATURE_NAMES, cross_features
from common.features import (
    HISTORY_LENGTH,
    ITEM_ID,
    ITEM_STATS,
    REQUEST_CONTEXT,
    USER_HISTORY,
    USER_ID,
    USER_PROFILE,
)
from common.online_features import MAX_ITEMS, UserFeatures, default_value, served_views
from common.request_context import request_context
from serving.catalog import CatalogIndex
from serving.eligibility import UserContext
from serving.protocols import FeatureReader, RankerConfig

TTL_JITTER = 0.5  # share of the item cache's ttl by which a fresh row may be aged (see ItemFeatureCache)
_DTYPES = {"Int64": np.int64, "UnixTimestamp": np.int64, "Float32": np.float32, "Float64": np.float64, "Bool": bool}


def _scalar_fields(join_key: str) -> list[tuple[str, str]]:
    return [(f.name, f.dtype) for s in served_views(join_key) for f in s.fields if not f.dtype.startswith("Array")]


def servable_features() -> set[str]:
    """Every feature name serving can hand to a ranker (scalar user/item features, context, crosses)."""
    return {n for n, _ in _scalar_fields(USER_ID)} | {n for n, _ in _scalar_fields(ITEM_ID)} | set(
        REQUEST_CONTEXT.names
    ) | set(CROSS_FEATURE_NAMES)


class ItemFeatureCache:
    """The item features of one release's catalog, column-wise by catalog row.

    Rows are fetched from the online store (at most ``MAX_ITEMS`` per read) when never fetched or
    older than ``ttl`` seconds; until then a row holds the store's defaults. Reads of the arrays are
    lock-free; refreshes are serialised.

    A fetched row's age starts at a random share (up to :data:`TTL_JITTER`) of ``ttl``: rows read
    together -- the whole catalog when a release loads -- then fall due over a spread of time instead
    of all at once, which would make every request of that moment read ~500 rows from the store.
    Staleness stays bounded by ``ttl``.
    """

    def __init__(
        self, catalog: CatalogIndex, reader: FeatureReader, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.catalog = catalog
        self.reader = reader
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        n = len(catalog)
        self.columns: dict[str, np.ndarray] = {}
        for spec in served_views(ITEM_ID):
            for f in spec.fields:
                dtype = _DTYPES.get(f.dtype, object)
                self.columns[f.name] = np.full(n, default_value(spec, f), dtype=dtype)
        self.found = {spec.name: np.zeros(n, dtype=bool) for spec in served_views(ITEM_ID)}
        self.fetched_at = np.full(n, -np.inf)
        self._jitter = np.random.default_rng()

    def stale(self, rows: np.ndarray) -> np.ndarray:
        return rows[self._clock() - self.fetched_at[rows] > self.ttl]

    def known(self, rows: np.ndarray) -> np.ndarray:
        return np.isfinite(self.fetched_at[rows])

    def refresh(self, rows: np.ndarray) -> int:
        """Fetch the stale ones among ``rows``; returns how many were read. Store errors propagate."""
        return self._fetch(np.unique(self.stale(rows)))

    def refresh_ahead(self, within: float, limit: int = MAX_ITEMS) -> int:
        """Fetch up to ``limit`` rows, oldest first, that go stale in the next ``within`` seconds: the
        release watcher calls it every poll, so requests seldom find a stale row and read the store."""
        if not np.isfinite(self.ttl) or self.ttl <= within:
            return 0
        oldest = np.argsort(self.fetched_at, kind="stable")[:limit]
        return self._fetch(oldest[self._clock() - self.fetched_at[oldest] > self.ttl - within])

    def _fetch(self, rows: np.ndarray) -> int:
        for start in range(0, len(rows), MAX_ITEMS):
            chunk = rows[start : start + MAX_ITEMS]
            fetched = self.reader.item_features(self.catalog.ids(chunk))
            with self._lock:
                for name, column in self.columns.items():
                    column[chunk] = np.asarray(fetched.columns[name], dtype=column.dtype)
                for view, mask in fetched.found.items():
                    self.found[view][chunk] = mask
                spread = TTL_JITTER * self.ttl if np.isfinite(self.ttl) else 0.0
                self.fetched_at[chunk] = self._clock() - self._jitter.uniform(0.0, spread, len(chunk))
        return len(rows)

    def in_stock(self) -> np.ndarray:
        """Real-time stock where the store has it, the catalog's inventory elsewhere."""
        return np.where(self.found[ITEM_STATS.name], self.columns["in_stock"], self.catalog.in_stock)


class ReadAhead:
    """Runs the item-feature read-ahead on a thread of its own, so whoever schedules it (the release
    watcher) never waits on the online store. A read-ahead still running when the next one is due
    (the store stalls) is not doubled: that one is skipped. The thread is a daemon: one stuck in a
    store call does not hold the process at exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[], None]) -> bool:
        """Start ``work`` unless the previous one still runs; returns whether it started."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self._thread = threading.Thread(target=work, name=self.name, daemon=True)
        self._thread.start()
        return True


def _ids(values: Mapping[str, Any], name: str) -> list[str]:
    return [str(v) for v in values.get(name) or []]


def user_context(features: UserFeatures | None, user_id: str) -> UserContext:
    """Re-ranking's view of the user. Profile attributes only count when the profile row exists, so
    an unknown attribute stays unknown (and fails the eligibility rules that need it)."""
    if features is None:
        return UserContext(user_id)
    v = features.values
    items = _ids(v, "hist_item_ids")
    purchases, declines = v.get("hist_item_purchases") or [], v.get("hist_item_declines") or []
    base = UserContext(
        user_id,
        purchased=frozenset(i for i, n in zip(items, purchases, strict=False) if n > 0),
        declined=frozenset(i for i, n in zip(items, declines, strict=False) if n > 0),
        categories=frozenset({*_ids(v, "cat_keys"), *_ids(v, "top_categories"), *_ids(v, "recent_category_keys")}),
    )
    if not features.found.get(USER_PROFILE.name, False):
        return base
    held = frozenset(_ids(v, "products_held"))
    return replace(
        base,
        age=v.get("age"),
        income=v.get("income"),
        credit_score=v.get("credit_score"),
        dti=v.get("dti"),
        has_arrears=v.get("has_arrears"),
        products_held=held,
        purchased=base.purchased | held,
    )


def recent_history(features: UserFeatures | None) -> list[str]:
    """The user's items, newest first: real-time recent items, then the batch history (distinct)."""
    if features is None:
        return []
    merged = dict.fromkeys([*_ids(features.values, "recent_item_ids"), *_ids(features.values, "hist_item_ids")])
    return list(merged)[:HISTORY_LENGTH]


def category_affinity(features: UserFeatures | None) -> dict[str, float]:
    """The user's top categories and their affinity, the content retriever's profile."""
    if features is None:
        return {}
    keys = _ids(features.values, "top_categories")
    scores = features.values.get("top_category_scores") or []
    return {key: float(score) for key, score in zip(keys, scores, strict=False)}


def segment_of(features: UserFeatures | None, column: str | None) -> str | None:
    """The user's popularity segment label (``None``: the global list)."""
    if features is None or column is None:
        return None
    value = features.values.get(column)
    return str(value) if value not in (None, "") else None


def history_row(features: UserFeatures | None) -> dict[str, Any] | None:
    """The ``user_history`` row cross features are computed from (None for an unknown user)."""
    if features is None or not features.found.get(USER_HISTORY.name, False):
        return None
    return {name: features.values.get(name) for name in USER_HISTORY.names}


def ranker_batch(
    config: RankerConfig,
    user: UserFeatures | None,
    items: Mapping[str, np.ndarray],
    item_ids: Sequence[str],
    categories: Sequence[str],
    now_ts: float,
    device: str | None,
) -> dict[str, np.ndarray]:
    """One array per ranker feature, one entry per candidate (user and context features broadcast).

    Missing values are what the ranker was trained on (``models.release.ranker_frame``): NaN for a
    numeric feature, ``""`` for a categorical one. Broadcast values are read-only views, not copies.
    """
    n = len(item_ids)
    context = request_context(now_ts, device)
    crosses = cross_features(history_row(user), item_ids, categories, now_ts)
    user_values = {} if user is None else user.values
    batch: dict[str, np.ndarray] = {}
    for name in config.numeric:
        source = items.get(name)
        if source is None:
            source = crosses.get(name, context.get(name))
        if source is None:
            source = user_values[name] if user is not None else _user_default(name)
        batch[name] = np.broadcast_to(np.asarray(source, dtype=np.float32), (n,))  # None -> NaN
    for name in config.categorical:
        source = items.get(name)
        if source is None:
            source = context.get(name)
        if source is None:
            source = user_values[name] if user is not None else _user_default(name)
        batch[name] = _strings(source, n)
    return batch


def _strings(source: Any, n: int) -> np.ndarray:
    """``n`` strings. An object column of the item cache is used as it is (it only ever holds ``str``:
    the store's values or the ``""`` default); a scalar is converted and broadcast (None -> "")."""
    if isinstance(source, np.ndarray) and source.dtype == object and source.ndim == 1:
        return source
    values = np.asarray(source, dtype=object)
    if values.ndim == 0:
        item = values.item()
        return np.broadcast_to(np.asarray("" if item is None else str(item), dtype=object), (n,))
    return np.asarray(["" if v is None else str(v) for v in values], dtype=object)


def _user_default(name: str) -> Any:
    for spec in served_views(USER_ID):
        for f in spec.fields:
            if f.name == name:
                return default_value(spec, f)
    raise KeyError(f"{name!r} is not a feature serving can provide")
