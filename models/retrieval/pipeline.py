"""Train every retriever of one domain and export the bundle (what launchers call): from training examples
and a popularity table (the nightly path, both built by Spark), or from an in-memory interactions frame."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from models.retrieval.content import ContentConfig, train_content_tower
from models.retrieval.examples import RetrievalExamples
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

    @property
    def history_length(self) -> int:
        """The examples' history length: the longer of the two towers'."""
        return max(self.two_tower.history_length, self.content.history_length)


def frame_inputs(interactions: pd.DataFrame, catalog: pd.DataFrame, user_features: pd.DataFrame | None,
                 as_of: datetime | pd.Timestamp, settings: RetrievalSettings) -> tuple[RetrievalExamples, PopularityTable]:
    """The towers' examples and the popularity table of an in-memory interactions frame (``user_id, item_id,
    timestamp, event_type, weight``); the nightly launcher has Spark build both instead."""
    examples = RetrievalExamples.from_interactions(interactions, catalog["item_id"].astype(str), settings.history_length,
                                                   settings.two_tower.seed)
    segments = segments_from(user_features, settings.segment_column)
    return examples, PopularityTable.build(interactions, as_of, settings.popularity, segments)


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
    """Everything from an in-memory interactions frame (``user_id, item_id, timestamp, event_type,
    weight``): its examples and its popularity as of ``as_of`` (default: the last interaction), then
    :func:`train_retrieval_bundle`. ``catalog``: the catalog contract; ``user_features``: ``user_id`` +
    profile columns."""
    settings = settings or RetrievalSettings()
    times = pd.to_datetime(interactions["timestamp"], utc=True)
    end = pd.Timestamp(as_of) if as_of is not None else times.max()
    examples, popularity = frame_inputs(interactions, catalog, user_features, end, settings)
    return train_retrieval_bundle(examples, popularity, catalog, out_dir, user_features, settings, log_dir, verbose,
                                  window=(str(times.min()), str(end)))


def train_retrieval_bundle(
    examples: RetrievalExamples,
    popularity: PopularityTable,
    catalog: pd.DataFrame,
    out_dir: Path,
    user_features: pd.DataFrame | None,
    settings: RetrievalSettings,
    log_dir: Path | None = None,
    verbose: int = 2,
    window: tuple[str, str] = ("", ""),
) -> dict:
    """Fit the two-tower and content towers on ``examples`` (streamed), export them with ``popularity`` to
    ``out_dir``; returns the bundle description with timings. TensorBoard logs go to
    ``log_dir/two_tower`` and ``log_dir/content``."""
    timings: dict[str, float] = {}

    def logs(name: str) -> str | None:
        return str(log_dir / name) if log_dir else None

    start = time.perf_counter()
    two_tower = train_two_tower(examples, catalog, user_features, settings.two_tower, logs("two_tower"), verbose)
    timings["two_tower_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    content = train_content_tower(examples, catalog, settings.content, logs("content"), verbose)
    timings["content_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    training = {
        "interactions": examples.rows,
        "users": two_tower.query_tower.user_lookup.vocabulary_size() - 1,  # without the OOV token
        "items": two_tower.candidate_tower.item_lookup.vocabulary_size() - 1,
        "window": list(window),
        "segment_column": settings.segment_column,
        "index": asdict(settings.index),
    }
    description = export_retrieval(out_dir, two_tower, content, popularity, catalog, settings.index, training)
    timings["export_s"] = round(time.perf_counter() - start, 2)
    return {**description, "timings": timings}
