"""Rolling popularity per segment: the cold-start fallback retriever.

Score of an item in a segment, as of time ``T`` (the end of the window, e.g. the run's logical date)::

    score = sum over the segment's events e on the item with T - window < t_e <= T of
            weight_e * 2 ** (-(T - t_e) / half_life)

Events after ``T`` are ignored, so a table rebuilt for a past date never looks ahead. A table is built
from one domain's interactions (a retrieval bundle serves one domain); segments are coarse user groups
(e.g. country or age band) plus ``GLOBAL`` over everyone. Every segment's list holds ``top_n`` items:
after the segment's own items come the remaining globally popular ones (segment score 0), so a small
segment still yields a full slate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

GLOBAL = "__all__"
_META_KEY = b"recsys.popularity"


@dataclass(frozen=True)
class PopularityConfig:
    window_days: float = 30.0
    half_life_days: float = 7.0
    top_n: int = 500


def _utc(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def decayed_scores(
    interactions: pd.DataFrame,
    as_of: datetime | pd.Timestamp | str,
    config: PopularityConfig,
    user_segments: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``segment, item_id, score`` for ``GLOBAL`` and every segment of ``user_segments`` (user -> label)."""
    end = _utc(as_of)
    times = pd.to_datetime(interactions["timestamp"], utc=True)
    age_days = (end - times).dt.total_seconds().to_numpy() / 86_400.0
    inside = (age_days >= 0) & (age_days < config.window_days)
    events = interactions.loc[inside, ["user_id", "item_id"]].copy()
    events["score"] = interactions.loc[inside, "weight"].to_numpy(dtype="float64") * np.exp2(
        -age_days[inside] / config.half_life_days
    )
    frames = [events.assign(segment=GLOBAL)]
    if user_segments:
        labels = events["user_id"].map(dict(user_segments))
        frames.append(events[labels.notna()].assign(segment=labels[labels.notna()].astype(str)))
    scored = pd.concat(frames, ignore_index=True)
    return scored.groupby(["segment", "item_id"], as_index=False)["score"].sum()


class PopularityTable:
    """Top-N lists per segment with a fast ``top(segment, k)``; unknown segments get the global list."""

    def __init__(self, table: pd.DataFrame, as_of: pd.Timestamp, config: PopularityConfig) -> None:
        self.table = table.reset_index(drop=True)
        self.as_of = as_of
        self.config = config
        self._lists = {
            str(segment): (group["item_id"].to_numpy(dtype=object), group["score"].to_numpy(dtype="float32"))
            for segment, group in self.table.groupby("segment", sort=False)
        }

    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        as_of: datetime | pd.Timestamp | str,
        config: PopularityConfig | None = None,
        user_segments: Mapping[str, str] | None = None,
    ) -> PopularityTable:
        config = config or PopularityConfig()
        return cls.from_scores(decayed_scores(interactions, as_of, config, user_segments), as_of, config)

    @classmethod
    def from_scores(cls, scores: pd.DataFrame, as_of: datetime | pd.Timestamp | str,
                    config: PopularityConfig) -> PopularityTable:
        """The table of ``segment, item_id, score`` rows (:func:`decayed_scores`, or Spark's
        :func:`spark_jobs.retrieval_examples.popularity_scores` for a lake too big for pandas)."""
        ranked_global = scores[scores["segment"] == GLOBAL].sort_values(["score", "item_id"], ascending=[False, True])
        parts = []
        for segment, group in scores.groupby("segment", sort=True):
            own = group.sort_values(["score", "item_id"], ascending=[False, True]).head(config.top_n)
            fill = ranked_global[~ranked_global["item_id"].isin(own["item_id"])].head(config.top_n - len(own))
            parts.append(pd.concat([own, fill.assign(segment=segment, score=0.0)], ignore_index=True))
        columns = ["segment", "item_id", "score", "rank"]
        table = (
            pd.concat([p.assign(rank=np.arange(1, len(p) + 1)) for p in parts], ignore_index=True)[columns]
            if parts
            else pd.DataFrame({c: pd.Series(dtype="float64" if c == "score" else object) for c in columns})
        )
        return cls(table, _utc(as_of), config)

    @property
    def segments(self) -> list[str]:
        return sorted(self._lists)

    def top(self, segment: str | None, k: int) -> tuple[list[str], np.ndarray]:
        """The ``k`` most popular items of ``segment`` (``None`` or unknown: ``GLOBAL``) and their scores."""
        found = self._lists.get(segment or GLOBAL) or self._lists.get(GLOBAL)
        if found is None:  # no event at all inside the window
            return [], np.zeros(0, dtype="float32")
        ids, scores = found
        return ids[:k].tolist(), scores[:k]

    def save(self, path: Path) -> None:
        meta = {"as_of": self.as_of.isoformat(), "config": asdict(self.config)}
        table = pa.Table.from_pandas(self.table, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    @classmethod
    def load(cls, path: Path) -> PopularityTable:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[_META_KEY])
        return cls(table.to_pandas(), pd.Timestamp(meta["as_of"]), PopularityConfig(**meta["config"]))


def segments_from(user_features: pd.DataFrame | None, column: str | None) -> dict[str, str]:
    """``user_id -> segment label`` from one profile column (users with no value get no segment)."""
    if user_features is None or column is None:
        return {}
    labelled = user_features.dropna(subset=[column])
    return dict(zip(labelled["user_id"].astype(str), labelled[column].astype(str), strict=True))
