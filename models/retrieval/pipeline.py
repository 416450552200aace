"""Train every retriever of one domain from DataFrames and export the bundle (what launchers call)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from models.retrieval.content import ContentConfig, train_content_tower
from models.retrieval.export import export_retrieval
from models.retrieval.index import IndexConfig
from models.retrieval.popularity import PopularityConfig, PopularityTable, segments_from
from models.retrieval.two_tower import TwoTowerConfig, train_two_tower


@dataclass(frozen=True)
class RetrievalSettings:
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    segment_column: str | None = None  # profile column that defines popularity segments


def build_retrieval_bundle(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    out_dir: Path,
    user_features: pd.DataFrame | None = None,
    as_of: datetime | pd.Timestamp | None = None,
    settings: RetrievalSettings | None = None,
    log_dir: Path | None = None,
    verbose: int = 2,
) -> dict:
    """Fit the two-tower and content towers, build popularity as of ``as_of`` (default: the last
    interaction), export everything to ``out_dir``; returns the bundle description with timings.

    ``interactions``: ``user_id, item_id, timestamp, event_type, weight``; ``catalog``: the catalog
    contract; ``user_features``: ``user_id`` + profile columns. TensorBoard logs go to
    ``log_dir/two_tower`` and ``log_dir/content``.
    """
    settings = settings or RetrievalSettings()
    end = pd.Timestamp(as_of) if as_of is not None else pd.to_datetime(interactions["timestamp"], utc=True).max()
    timings: dict[str, float] = {}

    def logs(name: str) -> str | None:
        return str(log_dir / name) if log_dir else None

    start = time.perf_counter()
    two_tower = train_two_tower(interactions, catalog, user_features, settings.two_tower, logs("two_tower"), verbose)
    timings["two_tower_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    content = train_content_tower(interactions, catalog, settings.content, logs("content"), verbose)
    timings["content_s"] = round(time.perf_counter() - start, 2)
    segments = segments_from(user_features, settings.segment_column)
    popularity = PopularityTable.build(interactions, end, settings.popularity, segments)
    start = time.perf_counter()
    training = {
        "interactions": len(interactions),
        "users": int(interactions["user_id"].nunique()),
        "items": int(interactions["item_id"].nunique()),
        "window": [str(pd.to_datetime(interactions["timestamp"], utc=True).min()), str(end)],
        "segment_column": settings.segment_column,
        "index": asdict(settings.index),
    }
    description = export_retrieval(out_dir, two_tower, content, popularity, catalog, settings.index, training)
    timings["export_s"] = round(time.perf_counter() - start, 2)
    return {**description, "timings": timings}
