"""A scratch world for the serving load benchmark, built in one process in a minute or two.

The nightly pipeline is the real way to a release, but it takes ~17 minutes on the ``tiny`` profile,
and ``tiny`` has 200 retail items -- fewer than the 500 candidates a request must rank. So, the way the
serving tests' fixtures do it at toy size, this module builds the real parts directly:

- a retail catalog and users from the simulator (:func:`simulation.retail_world.build_retail_world`,
  catalog size of the ``demo`` profile by default), and their interactions drawn from the hidden
  preferences (views, some purchases, over the last 30 days);
- a release staged, trained, checked and promoted with the release builder's own stages
  (:mod:`models.release`): two-tower + content retrievers with ScaNN indexes and popularity, the
  DCN ranker with the default feature set and architecture (fewer epochs: latency does not depend
  on them) and both exports;
- a Feast SQLite online store holding every served user and item feature view, computed from the
  interactions, plus the lake's catalog and users tables.

:func:`ensure_world` reuses a world already built with the same :class:`WorldSpec` in the directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.cross_features import cross_features
from common.epoch import epoch_seconds
from common.features import (
    HISTORY_LENGTH,
    ITEM_FEATURES,
    ITEM_STATS,
    RECENT_LENGTH,
    TOP_CATEGORIES,
    USER_ACTIVITY,
    USER_HISTORY,
    USER_PROFILE,
    FeatureViewSpec,
    smoothed_ctr,
)
from common.paths import DataPaths
from common.request_context import request_context

DOMAIN = "retail"
MARKER = "world.json"
DAY_S = 86_400
PURCHASE_SHARE = 0.12  # of the sampled interactions; the rest are views
WEIGHTS = {"view": 1.0, "purchase": 4.0}  # config/domains.yaml positive_events of retail
DEVICES = ("web", "ios", "android")


@dataclass(frozen=True)
class WorldSpec:
    items: int = 5_000
    users: int = 4_000
    interactions_per_user: float = 12.0
    ranking_users: int = 3_000  # users whose logged slates train the ranker
    epochs: int = 1
    seed: int = 7


@dataclass(frozen=True)
class ScratchWorld:
    data_root: Path
    artifacts_root: Path
    version: str


def ensure_world(root: Path, spec: WorldSpec = WorldSpec(), rebuild: bool = False) -> ScratchWorld:
    """The world in ``root``: reused if it was built with ``spec``, else (re)built from scratch."""
    marker = root / MARKER
    if not rebuild and marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("spec") == asdict(spec):
            return ScratchWorld(Path(saved["data_root"]), Path(saved["artifacts_root"]), saved["version"])
    if root.exists():
        import shutil

        shutil.rmtree(root)
    world = build_world(root, spec)
    marker.write_text(json.dumps({"spec": asdict(spec), "data_root": str(world.data_root),
                                  "artifacts_root": str(world.artifacts_root), "version": world.version}))
    return world


def build_world(root: Path, spec: WorldSpec) -> ScratchWorld:
    """Catalog, users, interactions, features in the online store, and a promoted release."""
    from common.lake import write_catalog, write_users
    from common.registry import ArtifactRegistry
    from simulation.profiles import DomainSize
    from simulation.retail_world import build_retail_world

    rng = np.random.default_rng(spec.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    size = DomainSize(users=spec.users, items=spec.items, new_users_per_day=0, new_items_per_day=0,
                      sessions_per_user_day=0.1, slate_size=10)
    world = build_retail_world(size, 0, int(now.timestamp() * 1e6), rng)
    catalog = world.catalog.drop(columns=["brand"], errors="ignore")
    paths = DataPaths(root / "data")
    write_catalog(catalog, paths, DOMAIN)
    write_users(world.users, paths, DOMAIN)
    events = _interactions(world.truth, catalog, spec.interactions_per_user, now, rng)
    frames = feature_frames(catalog, world.users, events, now, rng)
    _fill_store(paths, frames, now)

    registry = ArtifactRegistry(root / "artifacts")
    version = now.strftime("%Y%m%dT%H%M%S")
    _build_release(registry, version, catalog, world.users, events, frames, world.truth, spec, now, rng)
    return ScratchWorld(paths.root, registry.root, version)


def _interactions(truth: Any, catalog: pd.DataFrame, per_user: float, now: datetime,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Each user's distinct items drawn from the true preference (Gumbel top-k over affinity + appeal)."""
    n_items = len(truth.item_ids)
    counts = np.minimum(rng.poisson(per_user, len(truth.user_ids)) + 1, n_items)
    users, items = [], []
    for start in range(0, len(truth.user_ids), 512):
        chunk = np.arange(start, min(start + 512, len(truth.user_ids)))
        logits = truth.user_vec[chunk] @ truth.item_vec.T + truth.item_bias
        noisy = logits + rng.gumbel(size=logits.shape)
        top = np.argsort(-noisy, axis=1)[:, : counts[chunk].max()]
        for row, user in enumerate(chunk):
            users.append(np.full(counts[user], user))
            items.append(top[row, : counts[user]])
    u, i = np.concatenate(users), np.concatenate(items)
    purchase = rng.random(len(u)) < PURCHASE_SHARE
    seconds = rng.uniform(0, 30 * DAY_S, len(u)).astype(np.int64)
    kind = np.where(purchase, "purchase", "view")
    return pd.DataFrame({
        "user_id": truth.user_ids[u], "item_id": truth.item_ids[i], "event_type": kind,
        "ts": int(now.timestamp()) - seconds, "category": catalog["category"].to_numpy()[i],
        "price": catalog["price"].to_numpy()[i], "weight": np.where(purchase, 4.0, 1.0).astype("float32"),
    }).sort_values(["user_id", "ts"], ascending=[True, False], ignore_index=True)


def _user_rows(group: pd.DataFrame, now_ts: int, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """One user's ``user_history``, ``user_profile`` (behaviour part) and ``user_activity`` rows."""
    bought = (group["event_type"] == "purchase").to_numpy()
    ts = group["ts"].to_numpy()
    items = group["item_id"].tolist()[:HISTORY_LENGTH]
    categories = group["category"].tolist()
    keys = list(dict.fromkeys(categories))
    per_cat = pd.DataFrame({"category": categories, "bought": bought, "ts": ts,
                            "weight": group["weight"].to_numpy()}).groupby("category", sort=False)
    cat = per_cat.agg(views=("ts", "size"), purchases=("bought", "sum"), last=("ts", "max"),
                      weight=("weight", "sum")).loc[keys]
    history = {
        "hist_item_ids": items, "hist_item_last_ts": ts[: len(items)].tolist(),
        "hist_item_views": [1] * len(items), "hist_item_purchases": bought[: len(items)].astype(int).tolist(),
        "hist_item_declines": [0] * len(items), "cat_keys": keys, "cat_views": cat["views"].tolist(),
        "cat_purchases": cat["purchases"].astype(int).tolist(), "cat_last_ts": cat["last"].tolist(),
    }
    top = cat["weight"].sort_values(ascending=False).head(TOP_CATEGORIES)
    days = np.unique((now_ts - ts) // DAY_S)
    purchases = int(bought.sum())
    profile = {
        "purchase_count_30d": purchases, "purchase_frequency_30d": purchases / len(days),
        "avg_basket_value": float(group["price"][bought].mean()) if purchases else None,
        "lifetime_events": len(group), "lifetime_purchases": purchases, "active_days_30d": len(days),
        "days_since_last_purchase": float((now_ts - ts[bought].max()) / DAY_S) if purchases else None,
        "days_since_last_session": float((now_ts - ts.max()) / DAY_S),
        "top_categories": top.index.tolist(), "top_category_scores": (top / cat["weight"].sum()).tolist(),
    }
    recent = group.head(RECENT_LENGTH)
    recent_counts = recent["category"].value_counts(sort=False)
    activity = {
        "session_depth": int(rng.integers(1, 12)), "last_event_ts": int(ts.max()),
        "last_purchase_ts": int(ts[bought].max()) if purchases else 0,
        "recent_item_ids": recent["item_id"].tolist(), "recent_category_keys": recent_counts.index.tolist(),
        "recent_category_counts": recent_counts.tolist(),
    }
    return history, profile, activity


def feature_frames(catalog: pd.DataFrame, users: pd.DataFrame, events: pd.DataFrame, now: datetime,
                   rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The online rows of every user- and item-keyed view, computed from the interactions."""
    now_ts = int(now.timestamp())
    histories, profiles, activities = [], [], []
    for user_id, group in events.groupby("user_id", sort=False):
        history, profile, activity = _user_rows(group, now_ts, rng)
        histories.append({"user_id": user_id, **history})
        profiles.append({"user_id": user_id, **profile})
        activities.append({"user_id": user_id, **activity})
    signed_up = pd.to_datetime(users["signed_up_at"], utc=True)
    attributes = pd.DataFrame({"user_id": users["user_id"], "country": users["country"],
                               "age_band": users["age_band"],
                               "tenure_days": ((now - signed_up).dt.total_seconds() / DAY_S).astype("float32")})
    profile = pd.DataFrame(profiles).merge(attributes, on="user_id")

    age_days = (now_ts - events["ts"]) / DAY_S
    positives = events.assign(d7=age_days <= 7, d30=True, d1=age_days <= 1)
    counts = positives.groupby("item_id")[["d1", "d7", "d30"]].sum().reindex(catalog["item_id"], fill_value=0)
    impressions = (counts.to_numpy() * rng.uniform(5, 15, (len(catalog), 1))).astype(np.int64)
    launched = epoch_seconds(catalog["launched_at"]).astype(np.int64)
    items = pd.DataFrame({
        "item_id": catalog["item_id"], "price": catalog["price"],
        "price_bucket": pd.qcut(catalog["price"].rank(method="first"), 10, labels=False).astype(np.int64),
        "category": catalog["category"], "category_l1": catalog["category"].str.split(">").str[0],
        "margin": catalog["margin"], "launched_ts": launched,
        "popularity_7d": counts["d7"].to_numpy(), "popularity_30d": counts["d30"].to_numpy(),
        "ctr_7d": smoothed_ctr(counts["d7"].to_numpy(), impressions[:, 1]),
        "ctr_30d": smoothed_ctr(counts["d30"].to_numpy(), impressions[:, 2]),
    })
    stats = pd.DataFrame({
        "item_id": catalog["item_id"], "popularity_1d": counts["d1"].to_numpy(), "impressions_1d": impressions[:, 0],
        "ctr_1d": smoothed_ctr(counts["d1"].to_numpy(), impressions[:, 0]), "inventory": catalog["inventory"],
        "in_stock": catalog["inventory"] > 0,
    })
    return {USER_PROFILE.name: profile, USER_HISTORY.name: pd.DataFrame(histories),
            USER_ACTIVITY.name: pd.DataFrame(activities), ITEM_FEATURES.name: items, ITEM_STATS.name: stats}


def _complete(spec: FeatureViewSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Every field of the view; fields this world does not have (banking attributes) are null."""
    frame = frame.copy()
    for field in spec.fields:
        if field.name not in frame:
            frame[field.name] = [[] if field.dtype.startswith("Array") else None] * len(frame)
    return frame[[spec.entity, *spec.names]]


def _fill_store(paths: DataPaths, frames: dict[str, pd.DataFrame], now: datetime) -> None:
    from feature_repo.store import apply, get_store

    store = get_store(paths)
    apply(store, paths)
    stamp = now - timedelta(hours=1)
    for spec in (USER_PROFILE, USER_HISTORY, USER_ACTIVITY, ITEM_FEATURES, ITEM_STATS):
        frame = _complete(spec, frames[spec.name])
        store.write_to_online_store(spec.name, frame.assign(event_timestamp=stamp, created=stamp))


def ranking_set(frames: dict[str, pd.DataFrame], truth: Any, users: int, now: datetime,
                rng: np.random.Generator, slate: int = 10) -> pd.DataFrame:
    """Logged slates with serving's features and clicks drawn from the true relevance x position bias."""
    histories = frames[USER_HISTORY.name].set_index("user_id")
    chosen = rng.choice(histories.index.to_numpy(), size=min(users, len(histories)), replace=False)
    items = frames[ITEM_FEATURES.name].merge(frames[ITEM_STATS.name], on="item_id")
    item_ids = items["item_id"].to_numpy()
    rows = []
    for n, user in enumerate(chosen):
        picked = rng.choice(len(item_ids), size=slate, replace=False)
        ts = int(now.timestamp()) - int(rng.integers(0, 7 * DAY_S))
        crosses = cross_features(histories.loc[user].to_dict(), item_ids[picked],
                                 items["category"].to_numpy()[picked], ts)
        context = request_context(np.full(slate, ts), [DEVICES[int(rng.integers(0, 3))]] * slate)
        rows.append(pd.DataFrame({"user_id": user, "item_id": item_ids[picked], "request_id": f"q{n}",
                                  "position": np.arange(1, slate + 1), "event_timestamp": ts, **crosses, **context}))
    frame = pd.concat(rows, ignore_index=True)
    relevance = truth.relevance_idx(truth.user_index(frame["user_id"].to_numpy()),
                                    truth.item_index(frame["item_id"].to_numpy()))
    clicked = rng.random(len(frame)) < relevance * truth.examination(frame["position"].to_numpy())
    frame["clicked"] = clicked.astype("float32")
    profile = frames[USER_PROFILE.name].drop(columns=["top_categories", "top_category_scores"])
    frame = frame.merge(profile, on="user_id").merge(items, on="item_id")
    return frame.dropna(axis="columns", how="all")  # the world has no banking attributes: not features


def _build_release(registry: Any, version: str, catalog: pd.DataFrame, users: pd.DataFrame, events: pd.DataFrame,
                   frames: dict[str, pd.DataFrame], truth: Any, spec: WorldSpec, now: datetime,
                   rng: np.random.Generator) -> None:
    """Stage, train, check, finalize and promote one release with the release builder's stages."""
    from models.ranking.config import RankerConfig
    from models.release import check_indexes, finalize_release, train_ranker_into, train_retrieval_into
    from models.retrieval.content import ContentConfig
    from models.retrieval.pipeline import RetrievalSettings
    from models.retrieval.two_tower import TwoTowerConfig

    window = (date.fromordinal(now.date().toordinal() - 30), now.date())
    staging = registry.stage(DOMAIN, version)
    interactions = events.assign(timestamp=pd.to_datetime(events["ts"], unit="s", utc=True))
    settings = RetrievalSettings(two_tower=TwoTowerConfig(epochs=spec.epochs), content=ContentConfig(epochs=spec.epochs),
                                 segment_column="country")
    profiles = users[["user_id", "country", "age_band"]]
    train_retrieval_into(staging, interactions[["user_id", "item_id", "timestamp", "event_type", "weight"]], catalog,
                         profiles, window, settings, verbose=0)
    check_indexes(staging, events.groupby("user_id", sort=False)["item_id"].apply(list).to_dict())
    config = RankerConfig(structure="stacked", epochs=max(spec.epochs, 2), patience=1)
    train_ranker_into(staging, ranking_set(frames, truth, spec.ranking_users, now, rng), window, config, verbose=False)
    finalize_release(DOMAIN, version, window, registry=registry)
    registry.promote(DOMAIN, version)
