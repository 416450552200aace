"""The lake fallback: a domain that has data but no loaded release is still served.

Before a domain's first release is promoted (a business that just imported its events, catalog and
users) or while its release cannot be loaded, serving answers from the lake instead of a 503:

- candidates: the popularity of the domain's positive events (``positive_events`` weights) in the
  ``window_days`` lake partitions that end with the newest one holding a positive event, decayed
  with ``half_life_days`` from the newest positive event
  (:class:`models.retrieval.popularity.PopularityTable`). The window ends there, not at the newest
  partition: days of impressions only (serving's own, logged on the wall clock while the lake's data
  is older) would otherwise leave it empty. Only ``item_id, event_type, timestamp`` are read, only
  of those days;
- the catalog: the lake's (:func:`common.lake.read_catalog`), in stock by its inventory or by the
  online store's real-time stock where the store has the item;
- the hard filters of the normal re-ranking (:func:`serving.reranking.rerank`), with what the lake
  knows of the user: the items they converted on or declined (every partition, three columns) and,
  where the domain's rules check eligibility, their profile from the users file -- joined with the
  online store's history and profile when the store has the user.

The release watcher (:class:`serving.releases.ReleaseManager`) builds a fallback at start-up for
every domain without a live release, rebuilds it every ``refresh_seconds`` and drops it once a
release is live. Requests only read it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from common.domains import domain as domain_config
from common.features import USER_PROFILE
from common.lake import event_partitions, read_catalog, read_events
from common.online_features import UserFeatures
from common.paths import DataPaths
from models.retrieval.popularity import PopularityConfig, PopularityTable
from serving.catalog import CatalogIndex
from serving.eligibility import UserContext
from serving.features import ItemFeatureCache, user_context
from serving.metrics import ServingMetrics
from serving.protocols import FeatureReader, Retrieved
from serving.settings import FallbackSettings, FilterRules

log = logging.getLogger(__name__)

DECLINE = "decline"
PROFILE_COLUMNS = ("age", "income", "credit_score", "dti", "has_arrears")


def newest_day_with(paths: DataPaths, domain: str, event_types: Iterable[str]) -> str | None:
    """The newest lake partition (``YYYY-MM-DD``) of the domain holding one of ``event_types``; newest
    first, each partition's ``event_type`` column only, so usually one partition is looked at."""
    wanted = ds.field("event_type").isin(sorted(set(event_types)))
    for day in reversed(list(event_partitions(paths, domain))):
        if ds.dataset(paths.events_partition(domain, day), format="parquet").count_rows(filter=wanted):
            return day
    return None


def lake_popularity(paths: DataPaths, domain: str, settings: FallbackSettings) -> PopularityTable | None:
    """The domain's popularity from the lake (None: the lake holds no positive event of the domain)."""
    weights = domain_config(domain).positive_events
    newest = newest_day_with(paths, domain, weights) if weights else None
    if newest is None:
        return None
    since = (date.fromisoformat(newest) - timedelta(days=math.ceil(settings.window_days) - 1)).isoformat()
    events = read_events(paths, domain, ["item_id", "event_type", "timestamp"], weights, since)
    # The partitions read are the window: no further cut by age, only the decay.
    config = PopularityConfig(window_days=math.inf, half_life_days=settings.half_life_days, top_n=settings.top_n)
    # one global list: user_id only exists because the table's builder selects it (no segments here)
    interactions = events.assign(user_id="", weight=events["event_type"].map(weights).astype("float64"))
    return PopularityTable.build(interactions, events["timestamp"].max(), config)


def _items_by_user(frame: pd.DataFrame) -> dict[str, frozenset[str]]:
    grouped = frame.groupby("user_id", sort=False)["item_id"].agg(lambda items: frozenset(map(str, items)))
    return dict(zip(grouped.index.astype(str), grouped.to_numpy(), strict=True))


def _optional(values: pd.Series) -> np.ndarray:
    """An object array with None where the value is missing (an unknown attribute stays unknown)."""
    array = values.astype(object).to_numpy()
    return np.where(pd.isna(values).to_numpy(), None, array)


@dataclass(frozen=True)
class LakeUsers:
    """What the lake knows of each user for the hard filters."""

    converted: Mapping[str, frozenset[str]]  # user -> items of the domain's conversion event
    declined: Mapping[str, frozenset[str]]  # user -> items declined
    profile_row: Mapping[str, int]  # user -> row of the profile arrays (users file; eligibility rules only)
    profiles: Mapping[str, np.ndarray]  # PROFILE_COLUMNS -> object arrays (None: unknown)
    held: Sequence[frozenset[str]]  # products held, per profile row

    def context(self, user_id: str) -> UserContext:
        converted = self.converted.get(user_id, frozenset())
        declined = self.declined.get(user_id, frozenset())
        row = self.profile_row.get(user_id)
        if row is None:
            return UserContext(user_id, purchased=converted, declined=declined)
        values = {name: column[row] for name, column in self.profiles.items()}
        held = self.held[row]
        return UserContext(user_id, **values, products_held=held, purchased=converted | held, declined=declined)


def lake_users(paths: DataPaths, domain: str, filters: FilterRules) -> LakeUsers:
    """The conversions and declines the filters need (all partitions) and, for eligibility rules, the
    profiles of the users file."""
    kinds = {domain_config(domain).conversion_event} if filters.purchased else set()
    kinds |= {DECLINE} if filters.declined else set()
    converted: dict[str, frozenset[str]] = {}
    declined: dict[str, frozenset[str]] = {}
    events = read_events(paths, domain, ["user_id", "item_id", "event_type"], kinds) if kinds else pd.DataFrame()
    if not events.empty:
        is_decline = events["event_type"] == DECLINE
        converted = _items_by_user(events[~is_decline]) if filters.purchased else {}
        declined = _items_by_user(events[is_decline]) if filters.declined else {}
    profile_row: dict[str, int] = {}
    profiles: dict[str, np.ndarray] = {}
    held: list[frozenset[str]] = []
    users_file = paths.users(domain)
    if filters.eligibility and users_file.is_file():
        present = set(pq.read_schema(users_file).names)
        wanted = ["user_id", *(c for c in (*PROFILE_COLUMNS, "products_held") if c in present)]
        frame = pq.read_table(users_file, columns=wanted).to_pandas().drop_duplicates("user_id", keep="last")
        profile_row = {str(u): row for row, u in enumerate(frame["user_id"])}
        profiles = {c: _optional(frame[c]) if c in frame else np.full(len(frame), None) for c in PROFILE_COLUMNS}
        products = frame["products_held"] if "products_held" in frame else [None] * len(frame)
        held = [frozenset(map(str, p)) if p is not None and len(p) else frozenset() for p in products]
    return LakeUsers(converted, declined, profile_row, profiles, held)


@dataclass(frozen=True)
class LakeFallback:
    """One domain's fallback: what a request without a release reads."""

    domain: str
    version: str  # what responses report as their release: where the popularity comes from
    catalog: CatalogIndex
    popularity: PopularityTable | None  # None: no positive event in the lake (catalog order back-fills)
    users: LakeUsers
    items: ItemFeatureCache  # real-time stock where the online store has it

    def popular(self, k: int) -> Retrieved:
        if self.popularity is None:
            return [], np.zeros(0, dtype=np.float32)
        return self.popularity.top(None, k)

    def user_context(self, user_id: str, features: UserFeatures | None) -> UserContext:
        """The lake's view of the user joined with the online store's (whose profile, when it has one,
        is the fresher)."""
        lake = self.users.context(user_id)
        if features is None:
            return lake
        store = user_context(features, user_id)
        base = store if features.found.get(USER_PROFILE.name, False) else lake
        return replace(base, purchased=lake.purchased | store.purchased, declined=lake.declined | store.declined,
                       categories=store.categories)


def build_fallback(
    paths: DataPaths, domain: str, settings: FallbackSettings, filters: FilterRules, features: FeatureReader,
    item_cache_ttl: float,
) -> LakeFallback | None:
    """The domain's fallback from the lake; None when the lake has no catalog of the domain."""
    if not paths.catalog(domain).is_file():
        return None
    frame = read_catalog(paths, domain)
    if frame.empty:
        return None
    catalog = CatalogIndex.from_frame(frame, domain)
    popularity = lake_popularity(paths, domain, settings)
    users = lake_users(paths, domain, filters)
    items = ItemFeatureCache(catalog, features, item_cache_ttl)
    try:  # best effort: without the store, the catalog's inventory says what is in stock
        items.refresh(np.arange(len(catalog)))
    except Exception as err:
        log.info("%s lake fallback: no real-time stock from the online store (%s: %s); catalog inventory used",
                 domain, type(err).__name__, err)
    version = "lake-catalog" if popularity is None else f"lake-popularity@{popularity.as_of:%Y-%m-%dT%H:%M:%SZ}"
    return LakeFallback(domain, version, catalog, popularity, users, items)


class FallbackManager:
    """The lake fallback of every served domain that has no live release.

    :meth:`maintain` (called by the release watcher) builds, rebuilds and drops them; a failed
    rebuild keeps the previous fallback serving. Requests only call :meth:`get`.
    """

    def __init__(
        self,
        domains: Sequence[str],
        paths: DataPaths,
        features: FeatureReader,
        settings: FallbackSettings,
        filters: Mapping[str, FilterRules],
        metrics: ServingMetrics,
        item_cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domains = tuple(domains)
        self.paths = paths
        self.features = features
        self.settings = settings
        self.filters = filters
        self.metrics = metrics
        self.item_cache_ttl = item_cache_ttl
        self._clock = clock
        self._live: dict[str, LakeFallback] = {}
        self._due: dict[str, float] = {}
        self._without_data: set[str] = set()

    def get(self, domain: str) -> LakeFallback | None:
        return self._live.get(domain)

    def live(self) -> dict[str, LakeFallback]:
        return dict(self._live)

    def maintain(self, without_release: Iterable[str]) -> None:
        """Build or rebuild (when due) the fallback of each domain in ``without_release``; drop the others'."""
        needed = set(without_release) if self.settings.enabled else set()
        for domain in self.domains:
            if domain not in needed:
                self.drop(domain)
            elif self._clock() >= self._due.get(domain, -math.inf):
                self.rebuild(domain)

    def rebuild(self, domain: str) -> str:
        """Build the domain's fallback from the lake now; returns ``built``, ``no_data`` or ``failed``."""
        started = time.perf_counter()
        try:
            fallback = build_fallback(self.paths, domain, self.settings, self.filters[domain], self.features,
                                      self.item_cache_ttl)
        except Exception as err:  # a lake file being written or corrupt: retry soon, keep what serves
            self._due[domain] = self._clock() + self.settings.retry_seconds
            self.metrics.fallback_builds.labels(domain, "failed").inc()
            log.error("%s lake fallback could not be built (%s: %s); %s", domain, type(err).__name__, err,
                      "the previous one keeps serving" if domain in self._live else "retrying")
            return "failed"
        if fallback is None:
            self._due[domain] = self._clock() + self.settings.retry_seconds
            self.metrics.fallback_builds.labels(domain, "no_data").inc()
            if domain not in self._without_data:
                self._without_data.add(domain)
                log.warning("%s: no release is loaded and the lake has no catalog of it: requests get 503", domain)
            return "no_data"
        self._due[domain] = self._clock() + self.settings.refresh_seconds
        self._without_data.discard(domain)
        first = domain not in self._live
        self._live[domain] = fallback  # one reference swap: in-flight requests keep the old one
        self.metrics.fallback_builds.labels(domain, "built").inc()
        self.metrics.fallback_active.labels(domain).set(1)
        ranked = 0 if fallback.popularity is None else len(fallback.popular(self.settings.top_n)[0])
        (log.warning if first else log.info)(
            "%s: no release is loaded; serving the lake fallback %s (%d catalog items, %d ranked by popularity), "
            "built in %.2f s", domain, fallback.version, len(fallback.catalog), ranked, time.perf_counter() - started)
        return "built"

    def drop(self, domain: str) -> None:
        self._due.pop(domain, None)
        if self._live.pop(domain, None) is not None:
            self.metrics.fallback_active.labels(domain).set(0)
            log.info("%s: a release is live; the lake fallback is dropped", domain)

    def refresh_items(self, within: float) -> None:
        """Read ahead the real-time stock of each fallback's items (as for releases: on the release watcher's
        read-ahead thread, so a stalled store never holds the watcher)."""
        for domain, fallback in list(self._live.items()):
            try:
                fallback.items.refresh_ahead(within=within)
            except Exception as err:  # no online store (yet): the catalog's inventory stands
                log.debug("%s lake fallback stock refresh failed: %s: %s", domain, type(err).__name__, err)
