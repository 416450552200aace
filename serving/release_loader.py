"""Loading one release for serving, and refusing it when it must not serve.

A release directory ``artifacts/<domain>/<version>/`` (its layout: :mod:`common.registry`) holds, for
serving::

    retrieval/      the retrieval bundle (``models.retrieval.export.load_retrievers``)
    ranker/         the ranker exports (``models.ranking.export``; serving loads the ``fast`` one)
    catalog.parquet optional catalog snapshot the models were built on (else the lake's catalog)

Loading verifies every checksum of the manifest, loads the retrievers and the ranker, checks that
serving can produce every feature the ranker wants, scores one smoke batch and warms the item
feature cache. Any failure refuses the release (:class:`ReleaseRefused`). The nightly gate and
``recsys data releases promote`` run the same load (:func:`serving_refusal`) before they switch
``CURRENT``; the release watcher (:mod:`serving.releases`) runs it before a swap.

A refusal is deterministic (checksums, missing files, features serving cannot provide, a model that
does not load: the same release fails the same way) or transient (I/O errors, the online store,
timeouts: worth another try, see :func:`is_transient`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.lake import read_catalog
from common.manifest import Manifest
from common.paths import DataPaths
from common.registry import CATALOG_FILE, RANKER_DIR, RETRIEVAL_DIR, ArtifactRegistry, RegistryError
from models.retrieval.new_items import NewItemIndex
from serving.catalog import CatalogIndex
from serving.features import ItemFeatureCache, ranker_batch, servable_features
from serving.online import STORE_ERRORS
from serving.protocols import FeatureReader, RankScorer, RetrieverSet

log = logging.getLogger(__name__)
# Failures that may pass on their own: I/O, the online store, timeouts ...
_TRANSIENT = STORE_ERRORS
# ... except the I/O errors a release directory gives every time it is read
_DETERMINISTIC_OS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class ReleaseRefused(Exception):
    """A release that must not serve: it does not verify, does not load or fails its smoke test.
    ``transient``: the cause may pass (I/O, the online store), so it is worth another try later."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def is_transient(err: BaseException) -> bool:
    """Whether a failure to load a release may pass on its own (see ``_TRANSIENT``)."""
    return isinstance(err, _TRANSIENT) and not isinstance(err, _DETERMINISTIC_OS)


def _refusal(message: str, err: Exception) -> ReleaseRefused:
    return ReleaseRefused(f"{message}: {type(err).__name__}: {err}", transient=is_transient(err))


@dataclass(frozen=True)
class Release:
    domain: str
    version: str
    manifest: Manifest
    catalog: CatalogIndex
    retrievers: RetrieverSet
    scorer: RankScorer
    items: ItemFeatureCache
    new_items: NewItemIndex | None = None  # content vectors by launch time (the content retriever's new-item slots)

    @property
    def ranks_cold_users(self) -> bool:
        """Whether the ranker learned from users without history: one trained on impressions did (every
        served slate is an example), one bootstrapped from users' later interactions
        (``ranking_data.source == "bootstrap"``) only ever saw users with a history, so a cold user is
        outside what it knows and keeps the retrievers' order (popularity first)."""
        ranker = ((self.manifest.extra or {}).get("summaries") or {}).get("ranker") or {}
        data = ranker.get("ranking_data")
        return not (isinstance(data, dict) and data.get("source") == "bootstrap")

    @property
    def segment_column(self) -> str | None:
        """The user feature whose value picks the popularity segment (from the retrieval bundle)."""
        return (self.retrievers.description.get("training") or {}).get("segment_column")


def _load_retrievers(path: Path) -> RetrieverSet:
    from models.retrieval.export import load_retrievers

    return load_retrievers(path)


def _load_scorer(path: Path) -> RankScorer:
    from models.ranking.export import load_scorer

    return load_scorer(path, "fast")


class ReleaseLoader:
    """Builds a :class:`Release` from a verified release directory."""

    def __init__(
        self,
        registry: ArtifactRegistry,
        paths: DataPaths,
        features: FeatureReader,
        item_cache_ttl: float,
        load_retrievers: Callable[[Path], RetrieverSet] = _load_retrievers,
        load_scorer: Callable[[Path], RankScorer] = _load_scorer,
    ) -> None:
        self.registry = registry
        self.paths = paths
        self.features = features
        self.item_cache_ttl = item_cache_ttl
        self._load_retrievers = load_retrievers
        self._load_scorer = load_scorer

    def _catalog(self, directory: Path, domain: str) -> CatalogIndex:
        snapshot = directory / CATALOG_FILE
        frame = pd.read_parquet(snapshot) if snapshot.is_file() else read_catalog(self.paths, domain)
        if frame.empty:
            raise ReleaseRefused(f"{domain}: the catalog is empty")
        return CatalogIndex.from_frame(frame, domain)

    def load(self, domain: str, version: str) -> Release:
        try:
            result = self.registry.verify(domain, version)
        except (RegistryError, OSError) as err:  # an invalid name; a read error of the disk
            raise _refusal(f"{domain}/{version} cannot be verified", err) from err
        if not result.ok:
            raise ReleaseRefused(f"{domain}/{version} does not verify: " + "; ".join(result.problems))
        directory = self.registry.release_path(domain, version)
        try:
            manifest = self.registry.load_manifest(domain, version)
            catalog = self._catalog(directory, domain)
            retrievers = self._load_retrievers(directory / RETRIEVAL_DIR)
            new_items = NewItemIndex.from_bundle(directory / RETRIEVAL_DIR, catalog.item_ids, catalog.launched_ts)
            scorer = self._load_scorer(directory / RANKER_DIR)
        except ReleaseRefused:
            raise
        except Exception as err:  # a broken release can fail in any library; all mean "refuse it"
            raise _refusal(f"{domain}/{version} does not load", err) from err
        wanted = set(scorer.config.numeric) | set(scorer.config.categorical)
        unservable = sorted(wanted - servable_features())
        if unservable:
            raise ReleaseRefused(f"{domain}/{version}: the ranker wants features serving cannot provide: {unservable}")
        items = ItemFeatureCache(catalog, self.features, self.item_cache_ttl)
        release = Release(domain, version, manifest, catalog, retrievers, scorer, items, new_items)
        self._smoke_test(domain, version, release)
        return release

    def _smoke_test(self, domain: str, version: str, release: Release) -> None:
        """Call every retriever once (which also traces their TensorFlow functions, so the first request
        is not slow), warm the item cache (best effort) and score a few items with default features."""
        catalog, items, scorer = release.catalog, release.items, release.scorer
        probe_user = "__release_smoke_test__"
        try:
            release.retrievers.collaborative(probe_user, {}, [], 10)
            release.retrievers.content([], {}, 10)
            release.retrievers.popular(None, 10)
        except Exception as err:
            raise _refusal(f"{domain}/{version}: a retriever fails on a smoke query", err) from err
        rows = np.arange(len(catalog))
        try:
            items.refresh(rows)
        except Exception as err:  # the store being down must not block a release: the cache stays cold
            log.warning("release %s/%s: item feature warm-up failed (%s); cache starts cold", domain, version, err)
        probe = rows[:8]
        batch = ranker_batch(
            scorer.config, None, {n: c[probe] for n, c in items.columns.items()}, catalog.ids(probe),
            list(catalog.categories[probe]), 0.0, None,
        )
        try:
            scores = np.asarray(scorer.score(batch), dtype=np.float64)
        except Exception as err:
            raise _refusal(f"{domain}/{version}: the ranker fails on a smoke batch", err) from err
        if scores.shape != (len(probe),) or not np.isfinite(scores).all():
            raise ReleaseRefused(f"{domain}/{version}: the ranker returns {scores.shape} non-finite/misshaped scores")


def serving_refusal(registry: ArtifactRegistry, domain: str, version: str,
                    data_root: Path | None = None) -> ReleaseRefused | None:
    """Load a release the way a serving process will (checksums, models, feature coverage, smoke batch),
    with serving's settings and feature reader (``data_root``: another data root than the default): the
    check the nightly gate and ``recsys data releases promote`` run before they switch ``CURRENT``.
    None: serving would load it."""
    from serving.app import open_feature_reader
    from serving.online import LazyFeatureReader
    from serving.settings import load_settings

    settings = load_settings([domain])
    if data_root is not None:
        settings = settings.model_copy(update={"data_root": data_root})
    features = LazyFeatureReader(lambda: open_feature_reader(settings))
    loader = ReleaseLoader(registry, settings.data_paths, features, settings.item_cache_ttl_seconds)
    try:
        loader.load(domain, version)
    except ReleaseRefused as err:
        return err
    return None
