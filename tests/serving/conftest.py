"""Serving test fixtures: hand-built catalogs, and one small real world built once per session.

The world is the real thing at toy size: a retail catalog, users and interactions; a retrieval bundle
trained by ``models.retrieval`` (two-tower, content tower, ScaNN, popularity); a DCN ranker trained by
``models.ranking`` and exported in its fast format; a Feast SQLite online store holding the users'
and items' features. ``publish`` turns that into a verified, promoted release of a test registry.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.features import ITEM_FEATURES, ITEM_STATS, USER_HISTORY, USER_PROFILE
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from serving.catalog import CatalogIndex
from serving.metrics import ServingMetrics

NOW = datetime(2024, 6, 1, tzinfo=UTC)
LINES = [f"{a}>{b}>{c}" for a in ("Shoes", "Shirts", "Bags", "Hats") for b in ("Sport", "City") for c in ("X", "Y")]
USERS = [f"r_u{i:02d}" for i in range(24)]
OUT_OF_STOCK = "r_i07"  # in stock by the catalog, out of stock in the real-time item_stats view
RANKER_NUMERIC = ["price", "margin", "popularity_7d", "ctr_7d", "purchase_count_30d", "x_item_views",
                  "x_cat_views", "hour_of_day"]
RANKER_CATEGORICAL = ["category_l1", "device_type", "country"]


def _catalog_row(item_id: str, category: str, **extra: object) -> dict[str, object]:
    """One catalog row with harmless defaults (in stock, launched a year ago, low margin)."""
    row: dict[str, object] = {
        "item_id": item_id,
        "domain": "banking" if item_id.startswith("b_") else "retail",
        "title": item_id,
        "description": "",
        "category": category,
        "price": 10.0,
        "margin": 0.1,
        "inventory": 5,
        "launched_at": NOW - timedelta(days=365),
    }
    row.update(extra)
    return row


@pytest.fixture(scope="session")
def now() -> datetime:
    """The request time of the hand-built re-ranking tests."""
    return NOW


@pytest.fixture(scope="session")
def catalog_row() -> Callable[..., dict[str, object]]:
    """Factory of catalog rows (a fixture, so test modules need not import this conftest)."""
    return _catalog_row


@pytest.fixture
def banking_catalog() -> CatalogIndex:
    rows = [
        _catalog_row("b_card_basic", "Cards>Credit>Basic", min_age=18, min_income=10_000.0),
        _catalog_row("b_card_gold", "Cards>Credit>Gold", min_age=21, min_income=60_000.0, min_credit_score=700),
        _catalog_row("b_loan", "Loans>Personal", max_dti=0.4, requires_no_arrears=True, max_age=70),
        _catalog_row("b_savings", "Savings>Instant"),
        _catalog_row("b_student", "Cards>Credit>Student", max_age=25, excludes=["b_card_basic"]),
    ]
    return CatalogIndex.from_frame(pd.DataFrame(rows), "banking")


class MetricDelta:
    """Metric samples relative to when it was made.

    Importing feast switches prometheus_client to multiprocess value storage for the whole process,
    where same-named series of different registries share their values, so tests compare deltas.
    """

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self.start = self._samples()

    def _samples(self) -> dict[tuple, float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for metric in self.metrics.registry.collect() for s in metric.samples}

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self._samples().get(key, 0.0) - self.start.get(key, 0.0)


@pytest.fixture(scope="session")
def metric_delta() -> type[MetricDelta]:
    """``delta = metric_delta(metrics)`` before an action, ``delta(name, **labels)`` after it."""
    return MetricDelta


# ---------------------------------------------------------------------------------------------
# the small real world


@dataclass(frozen=True)
class World:
    root: Path
    catalog: pd.DataFrame
    template: Path  # release files: retrieval/, ranker/, catalog.parquet
    store_paths: DataPaths  # data root of the Feast store holding the world's features


def _world_frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    catalog = pd.DataFrame([
        _catalog_row(f"r_i{i:02d}", LINES[i % len(LINES)], title=f"{LINES[i % len(LINES)]} item {i}",
                     description=f"a {LINES[i % len(LINES)].replace('>', ' ').lower()} product",
                     price=float(5 + 3 * i), margin=0.5 if i % 5 == 0 else 0.15)
        for i in range(48)
    ])
    users = pd.DataFrame({"user_id": USERS, "country": ["DE", "FR"] * 12, "age_band": ["25-34", "35-44", "45-54"] * 8})
    rows = []
    for u, user in enumerate(USERS):
        liked = [i for i in range(48) if i % 4 == u % 4]  # each user likes one quarter of the lines
        for j, item in enumerate(rng.choice(liked, size=8, replace=False)):
            rows.append({"user_id": user, "item_id": f"r_i{item:02d}", "event_type": "purchase" if j == 0 else "view",
                         "timestamp": NOW - timedelta(days=10) + timedelta(hours=u + 7 * j)})
    interactions = pd.DataFrame(rows)
    interactions["weight"] = np.where(interactions["event_type"] == "purchase", 4.0, 1.0).astype("float32")
    return catalog, users, interactions


def _train_retrieval(interactions: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame, out: Path) -> None:
    from models.retrieval.content import ContentConfig
    from models.retrieval.pipeline import RetrievalSettings, build_retrieval_bundle
    from models.retrieval.two_tower import TwoTowerConfig

    settings = RetrievalSettings(
        two_tower=TwoTowerConfig(embedding_dim=8, id_dim=8, hidden=16, epochs=1, batch_size=64),
        content=ContentConfig(embedding_dim=8, hidden=16, epochs=1, batch_size=64),
        segment_column="country",
    )
    build_retrieval_bundle(interactions, catalog, out, user_features=users, settings=settings, verbose=0)


def _train_ranker(rng: np.random.Generator, out: Path) -> None:
    from models.ranking.config import RankerConfig
    from models.ranking.export import EXPORT_DIRS
    from models.ranking.fast_export import export_numpy
    from models.ranking.train import train_ranker

    n = 256  # features in the world's ranges; clicks favour high margin and the user's categories
    frame = pd.DataFrame({
        "price": rng.uniform(5, 150, n), "margin": rng.choice([0.15, 0.5], n), "popularity_7d": rng.integers(0, 48, n),
        "ctr_7d": np.full(n, 0.05), "purchase_count_30d": rng.integers(0, 2, n), "x_item_views": rng.integers(0, 2, n),
        "x_cat_views": rng.integers(0, 3, n), "hour_of_day": rng.integers(0, 24, n),
    }).astype("float32")
    frame["category_l1"] = rng.choice(["Shoes", "Shirts", "Bags", "Hats"], n)
    frame["device_type"] = rng.choice(["web", "ios"], n)
    frame["country"] = rng.choice(["DE", "FR"], n)
    frame["clicked"] = (rng.random(n) < 0.1 + frame["margin"] + 0.2 * frame["x_cat_views"]).astype("float32")
    config = RankerConfig(numeric=RANKER_NUMERIC, categorical=RANKER_CATEGORICAL, log1p=[], structure="stacked",
                          position_correction=False, deep_layers=(8,), cross_layers=1, embedding_dim=4, epochs=1,
                          batch_size=128)
    trained = train_ranker(frame[:192], frame[192:], config, verbose=False)
    export_numpy(trained, out / EXPORT_DIRS["fast"])


def _fill_store(paths: DataPaths, catalog: pd.DataFrame, users: pd.DataFrame, interactions: pd.DataFrame) -> None:
    """Write the world's user and item features into a fresh Feast SQLite online store."""
    from feature_repo.store import apply, get_store

    store = get_store(paths)
    apply(store, paths)
    stamp = NOW - timedelta(hours=1)
    ordered = interactions.sort_values("timestamp", ascending=False)
    history, profile = [], []
    for user, group in ordered.groupby("user_id", sort=False):
        items = list(dict.fromkeys(group["item_id"]))
        purchases = group[group["event_type"] == "purchase"]["item_id"]
        categories = [LINES[int(i[3:]) % len(LINES)] for i in items]
        keys = list(dict.fromkeys(categories))
        history.append({"user_id": user, "hist_item_ids": items, "hist_item_last_ts": [int(NOW.timestamp())] * len(items),
                        "hist_item_views": [1] * len(items), "hist_item_purchases": [int(i in set(purchases)) for i in items],
                        "hist_item_declines": [0] * len(items), "cat_keys": keys, "cat_views": [1] * len(keys),
                        "cat_purchases": [0] * len(keys), "cat_last_ts": [int(NOW.timestamp())] * len(keys)})
        profile.append({"user_id": user, "top_categories": keys[:3], "top_category_scores": [0.5, 0.3, 0.2][: len(keys[:3])],
                        "purchase_count_30d": len(purchases), "lifetime_events": len(group)})
    profiles = pd.DataFrame(profile).merge(users, on="user_id")
    items = pd.DataFrame({"item_id": catalog["item_id"], "price": catalog["price"], "margin": catalog["margin"],
                          "category": catalog["category"], "category_l1": catalog["category"].str.split(">").str[0],
                          "popularity_7d": np.arange(len(catalog)), "ctr_7d": 0.05})
    stats = pd.DataFrame({"item_id": catalog["item_id"], "inventory": 5, "in_stock": catalog["item_id"] != OUT_OF_STOCK})
    for spec, frame in ((USER_PROFILE, profiles), (USER_HISTORY, pd.DataFrame(history)),
                        (ITEM_FEATURES, items), (ITEM_STATS, stats)):
        for field in spec.fields:  # columns the world does not set: null (lists: empty)
            if field.name not in frame:
                frame[field.name] = [[] if field.dtype.startswith("Array") else None] * len(frame)
        store.write_to_online_store(spec.name, frame.assign(event_timestamp=stamp, created=stamp))


def _build_world(root: Path) -> None:
    rng = np.random.default_rng(7)
    catalog, users, interactions = _world_frames(rng)
    template = root / "release"
    _train_retrieval(interactions, catalog, users, template / "retrieval")
    _train_ranker(rng, template / "ranker")
    catalog.to_parquet(template / "catalog.parquet")
    _fill_store(DataPaths(root / "store"), catalog, users, interactions)


@pytest.fixture(scope="session")
def world(built_once) -> World:  # noqa: ANN001
    """Built once per test run (read-only: copy what a test changes): ~48 items, 24 users, real trained
    retrievers and ranker, a filled online store."""
    root = built_once.get("serving-world", _build_world)
    template = root / "release"
    return World(root, pd.read_parquet(template / "catalog.parquet"), template, DataPaths(root / "store"))


@pytest.fixture(scope="session")
def publish(world: World) -> Callable[..., str]:
    """``publish(registry, version, promote=True, mutate=None)``: the world's release as ``retail/<version>``.

    ``mutate(staging_dir)`` may alter the files before the release is checksummed and finalized.
    """

    def _publish(registry: ArtifactRegistry, version: str, promote: bool = True,
                 mutate: Callable[[Path], None] | None = None) -> str:
        staging = registry.stage("retail", version)
        shutil.copytree(world.template, staging, dirs_exist_ok=True)
        if mutate is not None:
            mutate(staging)
        registry.finalize("retail", version, training_window=("2024-05-01", "2024-06-01"), metrics={})
        if promote:
            registry.promote("retail", version)
        return version

    return _publish
