"""A ranking set built from retrieval candidates, for domains without logged impressions (MovieLens).

MovieLens has no impressions, so there is no served slate to learn from. Instead (documented choice):
the retrievers are fitted on the data before a label window, every label-window user gets the merged
candidates of all retrievers, and a candidate is a positive (``clicked = 1``) when the user has a
positive event on it inside the label window, a negative otherwise -- "which of the candidates will
this user pick next". There is no position, so the ranker trains without its position tower.

Features per (user, candidate), all computable at serving time:

- retriever signals: two-tower and content cosine (computed for every candidate, not only for those
  a retriever proposed), decayed popularity, each retriever's rank (``RANK_MISSING`` when it did not
  propose the item) and how many retrievers proposed it;
- item: log popularity in the training data, age since launch, top taxonomy level (categorical);
- user: log number of past interactions;
- user x item / user x category cross features of :mod:`common.cross_features` (``CROSS_FEATURES``),
  from a ``user_history`` row computed here from the interactions exactly as the feature view defines it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.cross_features import CROSS_FEATURE_NAMES, cross_features
from common.domains import domain as domain_config
from common.epoch import epoch_seconds
from common.features import HISTORY_LENGTH, USER_HISTORY
from models.ranking.config import HEAVY_TAILED, RankerConfig
from models.retrieval.candidates import RETRIEVERS, CandidateSet

RANK_MISSING = 1000.0
SIGNALS = ("collaborative_score", "content_score", "popularity_score", "collaborative_rank", "content_rank",
           "popularity_rank", "sources")
ITEM_USER = ("item_log_popularity", "item_age_days", "user_log_events")
NUMERIC = (*SIGNALS, *ITEM_USER, *CROSS_FEATURE_NAMES)
CATEGORICAL = ("category_l1",)


def candidate_ranker_config(**overrides: Any) -> RankerConfig:
    """The ranker over :data:`NUMERIC` + :data:`CATEGORICAL`, without position correction."""
    log1p = [n for n in NUMERIC if n in HEAVY_TAILED or n.endswith("_rank")]
    defaults: dict[str, Any] = {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL), "log1p": log1p,
                                "position_correction": False, "epochs": 8, "batch_size": 1024, "patience": 2}
    return RankerConfig(**{**defaults, **overrides})


def history_rows(before: pd.DataFrame, catalog: pd.DataFrame, domain: str) -> dict[str, dict[str, list]]:
    """One ``user_history`` row per user (the feature view's fields), from interactions before the cut:
    views = non-conversion positive events, purchases = the domain's conversion event."""
    conversion = domain_config(domain).conversion_event
    category = catalog.assign(item_id=catalog["item_id"].astype(str)).set_index("item_id")["category"]
    frame = before.assign(item_id=before["item_id"].astype(str),
                          ts=epoch_seconds(before["timestamp"]).astype(np.int64),
                          bought=(before["event_type"] == conversion).astype(int))
    frame = frame.assign(viewed=1 - frame["bought"], category=frame["item_id"].map(category).fillna(""))
    items = frame.groupby(["user_id", "item_id"], sort=False).agg(
        last=("ts", "max"), views=("viewed", "sum"), purchases=("bought", "sum")).reset_index()
    items = items.sort_values(["user_id", "last"], ascending=[True, False])
    cats = frame.groupby(["user_id", "category"], sort=False).agg(
        views=("viewed", "sum"), purchases=("bought", "sum"), last=("ts", "max")).reset_index()
    names = USER_HISTORY.names
    out: dict[str, dict[str, list]] = {}
    for user, part in items.groupby("user_id", sort=False):
        part = part.head(HISTORY_LENGTH)
        out[str(user)] = {names[0]: part["item_id"].tolist(), names[1]: part["last"].tolist(),
                          names[2]: part["views"].tolist(), names[3]: part["purchases"].tolist(),
                          names[4]: [0] * len(part)}
    for user, part in cats.groupby("user_id", sort=False):
        out[str(user)].update({names[5]: part["category"].tolist(), names[6]: part["views"].tolist(),
                               names[7]: part["purchases"].tolist(), names[8]: part["last"].tolist()})
    return out


class CandidateFeatures:
    """Turns a :class:`CandidateSet` of one retrieval bundle into a ranking frame."""

    def __init__(self, bundle: Path, before: pd.DataFrame, catalog: pd.DataFrame, domain: str,
                 now: pd.Timestamp) -> None:
        self.now_s = float(pd.Timestamp(now).timestamp())
        self.vectors = {name: _embeddings(bundle / name) for name in ("collaborative", "content")}
        items = catalog.assign(item_id=catalog["item_id"].astype(str)).set_index("item_id")
        counts = before["item_id"].astype(str).value_counts().reindex(items.index, fill_value=0)
        launched = pd.to_datetime(items["launched_at"], utc=True)
        self.items = pd.DataFrame({
            "item_log_popularity": np.log1p(counts.to_numpy(np.float64)),
            "item_age_days": ((pd.Timestamp(now) - launched).dt.total_seconds() / 86_400).clip(lower=0).fillna(0.0),
            "category": items["category"].fillna("").astype(str),
            "category_l1": items["category"].fillna("").astype(str).str.split(">").str[0],
        }, index=items.index)
        self.user_events = before["user_id"].astype(str).value_counts()
        self.histories = history_rows(before, catalog, domain)

    def frame(self, candidates: CandidateSet, positives: Collection[tuple[str, str]] = ()) -> pd.DataFrame:
        """One row per (user, merged candidate): features, ``request_id`` (= user), ``clicked`` label."""
        parts = []
        for row, user in enumerate(candidates.user_ids.tolist()):
            items = candidates.merged(row)
            if not items:
                continue
            part = self.items.loc[items].reset_index(names="item_id")
            part.insert(0, "user_id", user)
            for name in RETRIEVERS:
                own = candidates.ids[name][row, : candidates.found[name][row]].tolist()
                rank = {item: r + 1.0 for r, item in enumerate(own)}
                part[f"{name}_rank"] = [rank.get(i, RANK_MISSING) for i in items]
            part["sources"] = (part[[f"{n}_rank" for n in RETRIEVERS]] < RANK_MISSING).sum(axis=1).astype(float)
            popular = dict(zip(candidates.ids["popularity"][row, : candidates.found["popularity"][row]].tolist(),
                               candidates.scores["popularity"][row].tolist(), strict=False))
            part["popularity_score"] = [popular.get(i, 0.0) for i in items]
            part["collaborative_score"] = self._cosine("collaborative", candidates.collaborative_queries[row], items)
            part["content_score"] = self._cosine("content", candidates.content_queries[row], items)
            part["user_log_events"] = float(np.log1p(self.user_events.get(user, 0)))
            crosses = cross_features(self.histories.get(user), items, part["category"].tolist(), self.now_s)
            for name, values in crosses.items():
                part[name] = values
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        frame["request_id"] = frame["user_id"]
        wanted = set(positives)
        frame["clicked"] = [float((u, i) in wanted) for u, i in zip(frame["user_id"], frame["item_id"], strict=True)]
        frame[list(NUMERIC)] = frame[list(NUMERIC)].astype("float32")
        return frame

    def _cosine(self, name: str, query: np.ndarray, items: list[str]) -> np.ndarray:
        rows, matrix = self.vectors[name]
        return matrix[rows.get_indexer(items)] @ query.astype(np.float32)


def _embeddings(directory: Path) -> tuple[pd.Index, np.ndarray]:
    return pd.Index(np.load(directory / "item_ids.npy").astype(str)), np.load(directory / "item_embeddings.npy")


def positive_pairs(interactions: pd.DataFrame, positive_events: Collection[str]) -> set[tuple[str, str]]:
    kept = interactions[interactions["event_type"].isin(list(positive_events))]
    return set(zip(kept["user_id"].astype(str), kept["item_id"].astype(str), strict=True))


def ranked_lists(frame: pd.DataFrame, scores: np.ndarray, user_ids: np.ndarray, fallback: Mapping[str, np.ndarray],
                 k: int) -> np.ndarray:
    """``(n_users, k)`` ids: each user's candidates by descending score, completed from ``fallback[user]``."""
    ordered = frame.assign(_score=scores).sort_values(["user_id", "_score"], ascending=[True, False], kind="stable")
    by_user = ordered.groupby("user_id", sort=False)["item_id"].agg(list).to_dict()
    out = np.empty((len(user_ids), k), dtype=object)
    for row, user in enumerate(user_ids.tolist()):
        items = by_user.get(user, [])[:k]
        present = set(items)
        out[row] = items + [i for i in fallback[user] if i not in present][: k - len(items)]
    return out
