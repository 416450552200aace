"""End-to-end offline evaluation: retrievers alone, the merged candidate set, and retrieval -> ranking,
side by side with every baseline, on one temporal split and the same ground truth.

Protocol (one global time cut, never random; :func:`models.evaluation.split.split_by_time_fraction`)::

    fit .................. | validation | test
    retrievers A fitted here  labels of the    final evaluation
                              ranker's set
    retrievers B fitted on fit + validation ----> candidates + ranker scores for the test users

- Baselines: :func:`models.evaluation.evaluate.run_baselines` on the same split (tuned on validation).
- Retrievers: the release's own serving path (ScaNN indexes, popularity tables), each ranking the whole
  catalog minus the user's past items, completed with the popularity fallback when short
  (:mod:`models.retrieval.candidates`).
- New items: a share of the content retriever's places goes to items launched from ``new_items.days``
  before the stage's cut to the end of the period it is scored on (:mod:`models.retrieval.new_items`).
- Merged candidates: the union of the retrievers' top-K; its recall is reported separately.
- Popularity window/half-life: tuned on the validation window (:func:`tune_popularity`).
- Ranker: trained on candidates of retrievers A for the validation-window users, labels = their
  validation-window positives (:mod:`models.ranking.candidate_ranker`); early stopping on a user hold-out of
  that set. The test period is only ever scored. ``merged:two_tower_order`` orders the same merged
  candidates by two-tower cosine (the retrieval-only order the ranker must beat).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from common.epoch import epoch_seconds
from models.evaluation.baselines import BASELINES
from models.evaluation.data import DomainData
from models.evaluation.evaluate import EvaluationContext, evaluation_slices, run_baselines
from models.evaluation.metrics import gather, ideal_gains, ndcg_at_k
from models.evaluation.split import HeldOutTruth, TemporalSplit, build_ground_truth, split_by_time_fraction
from models.ranking.candidate_ranker import (
    CandidateFeatures,
    candidate_ranker_config,
    positive_pairs,
    ranked_lists,
)
from models.release import profile_columns, segment_column
from models.retrieval.candidates import CandidateSet, NewItemWindow, evaluation_histories, retrieve
from models.retrieval.new_items import DAY_SECONDS, NewItemIndex, NewItemSlots
from models.retrieval.pipeline import RetrievalSettings
from models.retrieval.popularity import PopularityConfig, PopularityTable

CANDIDATES_PER_RETRIEVER = 100
FULL_SLATE = 10


@dataclass(frozen=True)
class PipelineSettings:
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    k: int = CANDIDATES_PER_RETRIEVER
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    new_items: NewItemSlots = field(default_factory=NewItemSlots)
    ranker_epochs: int = 8
    ranker_valid_fraction: float = 0.2
    tune_baselines: bool = True
    baselines: tuple[str, ...] | None = None  # names; None = all
    positive_events: tuple[str, ...] | None = None  # default: the domain's conversion event
    verbose: int = 0


@dataclass
class PipelineResult:
    table: pd.DataFrame  # one row per (model, slice): baselines, retrievers, merged order, pipeline
    summary: dict[str, Any]  # candidate recall per slice, cold-start checks, ranker figures, split facts


@dataclass(frozen=True)
class _Profiles:
    frame: pd.DataFrame | None
    rows: dict[str, dict[str, Any]]
    segments: dict[str, str]

    @classmethod
    def of(cls, users: pd.DataFrame) -> _Profiles:
        columns = profile_columns(users) if not users.empty else []
        if not columns:
            return cls(None, {}, {})
        frame = users[["user_id", *columns]].drop_duplicates("user_id", keep="last")
        rows = {str(r.pop("user_id")): r for r in frame.to_dict("records")}
        segment = segment_column(users)
        segments = {u: str(r[segment]) for u, r in rows.items() if segment and r.get(segment) is not None}
        return cls(frame, rows, segments)


class _Stage:
    """Retrievers fitted on ``before`` (cut at ``cut``) and the candidates + features of some users, whose
    positives lie in ``[cut, until]``."""

    def __init__(self, data: DomainData, before: pd.DataFrame, cut: pd.Timestamp, until: pd.Timestamp,
                 directory: Path, settings: PipelineSettings, profiles: _Profiles) -> None:
        from models.retrieval.export import load_retrievers
        from models.retrieval.pipeline import build_retrieval_bundle

        retrieval = replace(settings.retrieval, segment_column=segment_column(data.users) if profiles.frame is not None
                            else None, popularity=replace(settings.retrieval.popularity, top_n=len(data.catalog)))
        build_retrieval_bundle(before, data.catalog, directory, profiles.frame, cut, retrieval,
                               directory.parent / "logs" / directory.name, settings.verbose)
        self.before, self.profiles = before, profiles
        self.retrievers = load_retrievers(directory)
        self.features = CandidateFeatures(directory, before, data.catalog, data.domain, cut)
        self.new_items = NewItemWindow(NewItemIndex.from_bundle(directory, data.catalog["item_id"], epoch_seconds(data.catalog["launched_at"])),
                                       cut.timestamp() - settings.new_items.days * DAY_SECONDS, until.timestamp(),
                                       settings.new_items) if "launched_at" in data.catalog else None

    def candidates(self, user_ids: np.ndarray, k: int) -> CandidateSet:
        histories, seen = evaluation_histories(self.before, user_ids)
        return retrieve(self.retrievers, user_ids, histories, seen, k, self.profiles.rows, self.profiles.segments,
                        self.new_items)


def candidate_recall(candidates: CandidateSet, truth: HeldOutTruth, rows: np.ndarray) -> float:
    """Mean over users of |merged candidates ∩ relevant| / |relevant| (users = ``rows`` of ``candidates``)."""
    if len(rows) == 0:
        return float("nan")
    recalls = []
    for truth_row, row in enumerate(rows):
        relevant = truth.relevance[truth_row].indices
        found = np.isin(truth.items.encode(np.asarray(candidates.merged(int(row)), dtype=object)), relevant).sum()
        recalls.append(found / len(relevant))
    return float(np.mean(recalls))


POPULARITY_GRID = ((30.0, 7.0), (365.0, 90.0), (3650.0, 730.0), (36500.0, 36500.0))  # (window, half-life) days


def tune_popularity(split: TemporalSplit, catalog: pd.DataFrame, positives: Collection[str],
                    settings: PipelineSettings, say: Callable[[str], None]) -> PopularityConfig:
    """The popularity window and half-life with the best NDCG@10 on the validation window (fitted on
    ``split.fit``; every validation user, since popularity is what users without history get)."""
    truth = build_ground_truth(split.validation, split.fit, catalog, positives)
    _, seen = evaluation_histories(split.fit, truth.user_ids)
    ideal = ideal_gains(truth.relevance, 10)
    best, best_score = settings.retrieval.popularity, -1.0
    for window, half_life in POPULARITY_GRID:
        config = replace(settings.retrieval.popularity, window_days=window, half_life_days=half_life, top_n=len(catalog))
        ranked = PopularityTable.build(split.fit, split.validation_start, config).top(None, len(catalog))[0]
        recs = np.array([[i for i in ranked if i not in seen.get(u, ())][:10] for u in truth.user_ids], dtype=object)
        if recs.shape[1] < 10:
            continue
        score = ndcg_at_k(gather(truth.items.encode(recs), truth.relevance), ideal, 10)
        say(f"  popularity window {window:g} d, half-life {half_life:g} d: validation NDCG@10 = {score:.4f}")
        if score > best_score:
            best, best_score = config, score
    return best


def _train_ranker(data: DomainData, split: TemporalSplit, workdir: Path, settings: PipelineSettings,
                  profiles: _Profiles, positives: Collection[str], k: int, say: Callable[[str], None]) -> Any:
    from models.ranking.data import holdout_split
    from models.ranking.train import train_ranker

    stage = _Stage(data, split.fit, split.validation_start, split.test_start, workdir / "fit", settings, profiles)
    users = build_ground_truth(split.validation, split.fit, data.catalog, positives).user_ids
    frame = stage.features.frame(stage.candidates(users, k), positive_pairs(split.validation, positives))
    say(f"ranker set: {len(frame):,} candidates of {len(users)} validation users, "
        f"{int(frame['clicked'].sum())} positives")
    train, valid = holdout_split(frame, settings.ranker_valid_fraction, seed=0)
    config = candidate_ranker_config(epochs=settings.ranker_epochs)
    return train_ranker(train, valid, config, tensorboard_dir=workdir / "logs" / "ranker", verbose=settings.verbose > 0)


def evaluate_pipeline(data: DomainData, workdir: Path, settings: PipelineSettings | None = None,
                      progress: Callable[[str], None] | None = None) -> PipelineResult:
    """Run the whole comparison for one domain (see the module docstring); models are written to ``workdir``."""
    settings = settings or PipelineSettings()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    positives = settings.positive_events or (domain_config(data.domain).conversion_event,)
    split = split_by_time_fraction(data.interactions, settings.test_fraction, settings.validation_fraction)
    most_seen = int(split.train.groupby("user_id")["item_id"].nunique().max())
    k = min(settings.k, len(data.catalog) - most_seen)  # a small catalog (banking): every user's unseen items
    ks = (10, k)
    models = [m for m in BASELINES if settings.baselines is None or m.name in settings.baselines]
    table = run_baselines(data, split=split, ks=ks, positive_events=positives, models=models,
                          tune=settings.tune_baselines, progress=say)
    profiles = _Profiles.of(data.users)
    popularity = tune_popularity(split, data.catalog, positives, settings, say)
    settings = replace(settings, retrieval=replace(settings.retrieval, popularity=popularity))
    ranker = _train_ranker(data, split, workdir, settings, profiles, positives, k, say)
    say(f"ranker: {ranker.config.structure} validation {ranker.metrics}")
    truth = build_ground_truth(split.test, split.train, data.catalog, positives)
    stage = _Stage(data, split.train, split.test_start, split.test_end, workdir / "train", settings, profiles)
    candidates = stage.candidates(truth.user_ids, k)
    frame = stage.features.frame(candidates)
    fallback = dict(zip(truth.user_ids.tolist(), candidates.ids["popularity"], strict=True))
    lists = {f"retriever:{name}": ids for name, ids in candidates.ids.items()}
    lists["merged:two_tower_order"] = ranked_lists(frame, frame["collaborative_score"].to_numpy(), truth.user_ids,
                                                   fallback, k)
    lists["pipeline:ranked"] = ranked_lists(frame, ranker.predict(frame)["score"], truth.user_ids, fallback, k)
    slices = evaluation_slices(EvaluationContext.build(truth, split.train, data.catalog, k), split, data.catalog)
    rows = [{"model": name, "slice": slice_name, **context.evaluate(recs[kept], ks)}
            for name, recs in lists.items() for slice_name, (context, kept) in slices.items()]
    merged_sizes = np.array([len(candidates.merged(r)) for r in range(len(truth.user_ids))])
    cold_rows = slices["cold_users"][1]
    summary = {
        "domain": data.domain, "positives": list(positives), "k": k,
        "split": {"validation_start": str(split.validation_start), "test_start": str(split.test_start),
                  "test_end": str(split.test_end), "train_rows": len(split.train), "test_users": len(truth.user_ids),
                  "test_users_without_history": int((~np.isin(truth.user_ids, split.train["user_id"].unique())).sum())},
        "candidate_recall": {name: candidate_recall(candidates, context.ground_truth, kept)
                             for name, (context, kept) in slices.items()},
        "mean_merged_candidates": float(merged_sizes.mean()),
        "cold_users_full_slate": float((merged_sizes[cold_rows] >= FULL_SLATE).mean()) if len(cold_rows) else None,
        "content_found_cold_items": _cold_item_hits(candidates.ids["content"], candidates.found["content"],
                                                     slices["cold_items"]),
        "popularity": {"window_days": popularity.window_days, "half_life_days": popularity.half_life_days},
        "ranker": {"structure": ranker.config.structure, "validation": ranker.metrics,
                   "comparison": ranker.comparison, "best_epoch": ranker.best_epoch},
        "seconds": round(time.perf_counter() - started, 1),
    }
    ours = pd.DataFrame(rows).assign(params="see summary", tune_s=float("nan"), fit_s=float("nan"),
                                     recommend_s=float("nan"))
    out = pd.concat([table, ours], ignore_index=True)
    out.attrs.update(table.attrs)
    return PipelineResult(out, summary)


def _cold_item_hits(ids: np.ndarray, found: np.ndarray, cold: tuple[EvaluationContext, np.ndarray]) -> int:
    """Relevant test-period items the content retriever itself proposed (its own candidates only)."""
    context, rows = cold
    truth = context.ground_truth
    hits = 0
    for truth_row, row in enumerate(rows):
        own = ids[row, : found[row]]
        hits += int(np.isin(truth.items.encode(own), truth.relevance[truth_row].indices).sum())
    return hits
