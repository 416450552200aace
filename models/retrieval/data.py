"""Pandas preparation shared by the retrieval models, the export and serving.

Everything that turns contract-shaped frames (interactions, catalog, user features) into model inputs
lives here, so training, index building and the request path format inputs the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from common.domains import domain
from common.features import RECENT_LENGTH

HISTORY_LENGTH = RECENT_LENGTH  # serving feeds the real-time ``recent_item_ids`` list of this length
CATEGORY_LEVELS = 3  # taxonomy prefixes embedded: "A", "A>B", "A>B>C"
PAD = ""  # padding token of history tensors (never a valid id)
ITEM_INPUTS = tuple(f"cat_l{level}" for level in range(1, CATEGORY_LEVELS + 1)) + ("text", "price")


def implicit_interactions(events: pd.DataFrame, domain_name: str) -> pd.DataFrame:
    """Positive events of one domain as ``user_id, item_id, timestamp, event_type, weight``.

    Weights come from ``positive_events`` of the domain config; other event types are dropped.
    """
    weights = domain(domain_name).positive_events
    kept = events[events["event_type"].isin(list(weights))]
    out = kept[["user_id", "item_id", "timestamp", "event_type"]].copy()
    out["weight"] = out["event_type"].map(weights).astype("float32")
    return out.reset_index(drop=True)


def category_levels(path: str | None) -> list[str]:
    """Taxonomy prefixes of a ``>``-separated path, padded with ``""``: ``A>B`` -> ``["A", "A>B", ""]``."""
    parts = [p.strip() for p in (path or "").split(">") if p.strip()]
    prefixes = [">".join(parts[: i + 1]) for i in range(min(len(parts), CATEGORY_LEVELS))]
    return prefixes + [PAD] * (CATEGORY_LEVELS - len(prefixes))


def item_content_inputs(catalog: pd.DataFrame) -> dict[str, np.ndarray]:
    """Content inputs of every catalog row: ``item_id`` and ``ITEM_INPUTS`` (``cat_l1..3``, ``text``, ``price``)."""
    levels = np.array([category_levels(c) for c in catalog["category"].fillna("")], dtype=object)
    levels = levels.reshape(len(catalog), CATEGORY_LEVELS)
    text = (catalog["title"].fillna("").astype(str) + " " + catalog["description"].fillna("").astype(str)).str.strip()
    out: dict[str, np.ndarray] = {"item_id": catalog["item_id"].astype(str).to_numpy(dtype=object)}
    for level in range(CATEGORY_LEVELS):
        out[f"cat_l{level + 1}"] = levels[:, level]
    out["text"] = text.to_numpy(dtype=object)
    out["price"] = pd.to_numeric(catalog["price"], errors="coerce").fillna(0.0).to_numpy(dtype="float32")
    return out


def with_histories(interactions: pd.DataFrame, length: int = HISTORY_LENGTH) -> pd.DataFrame:
    """Interactions in time order with a ``history`` column: the user's previous distinct items.

    ``history`` lists at most ``length`` item ids, newest first, never including the row's own item --
    the same shape as the real-time ``recent_item_ids`` feature that serving sends.
    """
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    histories: list[list[str]] = []
    recent: list[str] = []
    previous_user = None
    for user, item in zip(ordered["user_id"].to_numpy(), ordered["item_id"].to_numpy(), strict=True):
        if user != previous_user:
            recent, previous_user = [], user
        histories.append([x for x in recent if x != item][:length])
        recent = [item, *(x for x in recent if x != item)][: length + 1]
    ordered["history"] = histories
    return ordered


def latest_histories(interactions: pd.DataFrame, length: int = HISTORY_LENGTH) -> dict[str, list[str]]:
    """Each user's most recent distinct items (newest first) after all given interactions."""
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    out: dict[str, list[str]] = {}
    for user, items in ordered.groupby("user_id", sort=False)["item_id"]:
        out[str(user)] = list(dict.fromkeys(reversed(items.tolist())))[:length]
    return out


def pad_histories(histories: Iterable[Sequence[str]], length: int = HISTORY_LENGTH) -> np.ndarray:
    """A ``[n, length]`` object array of item ids, padded with ``""`` (longer lists are cut)."""
    return padded(pa.array([list(h) for h in histories], pa.list_(pa.string())), length)


def padded(lists: pa.ListArray, length: int) -> np.ndarray:
    """A ``[n, length]`` object array of a list column's first ``length`` values, ``""`` padded (vectorised)."""
    lists = lists.fill_null(pa.scalar([], lists.type)) if lists.null_count else lists
    offsets = lists.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]
    values = lists.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    sizes = np.minimum(np.diff(offsets), length)
    out = np.full((len(lists), length), PAD, dtype=object)
    for position in range(length):
        rows = np.flatnonzero(sizes > position)
        out[rows, position] = values[starts[rows] + position]
    return out


@dataclass(frozen=True)
class UserFeatureSpec:
    """Which profile columns the query tower reads: numeric ones (raw, NaN = missing) and categorical
    ones (sent as ``"column=value"`` tokens, so one vocabulary serves every column)."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    @classmethod
    def from_frame(cls, user_features: pd.DataFrame | None) -> UserFeatureSpec:
        if user_features is None:
            return cls()
        numeric, categorical = [], []
        for column in user_features.columns:
            if column == "user_id":
                continue
            series = user_features[column]
            if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
                numeric.append(column)
            elif series.dropna().map(lambda v: isinstance(v, str)).all():
                categorical.append(column)  # list-valued and other columns are not profile scalars
        return cls(tuple(numeric), tuple(categorical))

    def encode(self, user_ids: Sequence[str], user_features: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """``(numeric [n, k] float32, categorical [n, c] object)`` for the given users (missing rows: NaN/``col=``)."""
        n = len(user_ids)
        if user_features is None or not (self.numeric or self.categorical):
            return np.zeros((n, len(self.numeric)), "float32"), np.full((n, len(self.categorical)), PAD, object)
        table = user_features.drop_duplicates("user_id", keep="last").set_index("user_id").reindex(list(user_ids))
        numeric = table[list(self.numeric)].astype("float32").to_numpy() if self.numeric else np.zeros((n, 0), "float32")
        categorical = np.empty((n, len(self.categorical)), dtype=object)
        for j, column in enumerate(self.categorical):
            values = table[column].astype(object).where(table[column].notna(), "")
            categorical[:, j] = [f"{column}={v}" for v in values]
        return numeric.reshape(n, len(self.numeric)), categorical

    def encode_one(self, features: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """One request's profile (a mapping, possibly partial) as ``([1, k], [1, c])`` arrays."""
        features = features or {}
        numeric = np.array([[_number(features.get(c)) for c in self.numeric]], dtype="float32")
        categorical = np.array(
            [[f"{c}={features[c] if features.get(c) is not None else ''}" for c in self.categorical]], dtype=object
        )
        return numeric.reshape(1, len(self.numeric)), categorical.reshape(1, len(self.categorical))

    def to_json(self) -> str:
        return json.dumps({"numeric": list(self.numeric), "categorical": list(self.categorical)})

    @classmethod
    def from_json(cls, text: str) -> UserFeatureSpec:
        raw = json.loads(text)
        return cls(tuple(raw["numeric"]), tuple(raw["categorical"]))


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
