"""Evaluate recommendation lists against held-out ground truth, and compare the baselines in one run.

- :func:`evaluate_recommender`: every metric of ``models.evaluation.metrics`` at each K for one
  ``(n_users, K)`` matrix of item ids (rows aligned with ``ground_truth.user_ids``).
- :func:`merged_recall`: recall of the union of several retrievers' top-k candidates (the merged
  candidate set the retrieval stage hands to the ranker).
- :func:`run_baselines`: temporal split -> tune on validation -> fit on train -> full-ranking
  evaluation on test, for every baseline and every slice, as one tidy table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common.domains import domain as domain_config
from models.evaluation import metrics as m
from models.evaluation.baselines import BASELINES, PopularityRecommender, Recommender
from models.evaluation.data import DomainData, ItemVocabulary
from models.evaluation.split import (
    HeldOutTruth,
    TemporalSplit,
    build_ground_truth,
    items_launched_between,
    split_by_time_fraction,
    users_with_few_events,
)
from models.evaluation.tuning import grid_search
from models.retrieval.data import category_levels

COLD_USER_EVENTS = 2  # users with at most this many training events form the cold-start slice


def category_features(catalog: pd.DataFrame, items: ItemVocabulary) -> sp.csr_matrix:
    """Multi-hot taxonomy prefixes per item (``A``, ``A>B``, ``A>B>C``), rows aligned with ``items``.

    Prefixes every item shares (e.g. MovieLens' root ``Movies``) carry no information and are dropped.
    """
    rows = catalog.assign(item_id=catalog["item_id"].astype(str)).set_index("item_id")["category"].reindex(items.ids)
    pairs = [(row, p) for row, path in enumerate(rows.fillna("")) for p in category_levels(path) if p]
    frame = pd.DataFrame(pairs, columns=["row", "prefix"])
    counts = frame["prefix"].value_counts()
    frame = frame[frame["prefix"].map(counts) < len(items)]
    codes, _ = pd.factorize(frame["prefix"])
    return sp.csr_matrix((np.ones(len(frame)), (frame["row"], codes)), shape=(len(items), int(codes.max(initial=-1)) + 1))


@dataclass(frozen=True)
class EvaluationContext:
    """What every model's evaluation on one ground truth shares (computed once)."""

    ground_truth: HeldOutTruth
    information: np.ndarray  # per item -log2 p(i), p from training popularity
    popularity_share: np.ndarray  # per item: share of training users who interacted with it
    features: sp.csr_matrix  # per item category features (intra-list diversity)
    expected: np.ndarray  # (n_users, max_k) popularity top-K indices: the "expected" lists (serendipity)

    @classmethod
    def build(cls, ground_truth: HeldOutTruth, train: pd.DataFrame, catalog: pd.DataFrame, max_k: int) -> EvaluationContext:
        items = ground_truth.items
        n_train_users = max(train["user_id"].nunique(), 1)
        pairs = train.drop_duplicates(["user_id", "item_id"])
        user_counts = np.bincount(items.encode(pairs["item_id"].to_numpy()), minlength=len(items))
        primitive = PopularityRecommender().fit(train, catalog, pd.DataFrame(columns=["user_id"]))
        return cls(
            ground_truth=ground_truth,
            information=m.self_information(user_counts, n_train_users),
            popularity_share=user_counts / n_train_users,
            features=category_features(catalog, items),
            expected=items.encode(primitive.recommend(ground_truth.user_ids, max_k)),
        )

    def restrict(self, users: np.ndarray | None = None, items: np.ndarray | None = None) -> tuple[EvaluationContext, np.ndarray]:
        """A slice (see :meth:`HeldOutTruth.restrict`) and the kept row numbers."""
        truth, rows = self.ground_truth.restrict(users, items)
        return replace(self, ground_truth=truth, expected=self.expected[rows]), rows

    def evaluate(self, recs: np.ndarray, ks: Iterable[int] = (10, 100)) -> dict[str, float | int]:
        truth = self.ground_truth
        if recs.shape[0] != len(truth.user_ids):
            raise ValueError(f"recs has {recs.shape[0]} rows for {len(truth.user_ids)} ground-truth users")
        out: dict[str, float | int] = {"users": len(truth.user_ids)}
        if len(truth.user_ids) == 0:
            return out
        index = truth.items.encode(recs)
        hits = m.gather(index, truth.relevance) > 0
        gains = m.gather(index, truth.grades)
        n_items = len(truth.items)
        for k in ks:
            if k > recs.shape[1]:
                raise ValueError(f"k={k} exceeds the {recs.shape[1]} recommendations per user")
            out |= {
                f"recall@{k}": m.recall_at_k(hits, truth.n_relevant, k),
                f"ndcg@{k}": m.ndcg_at_k(hits.astype(float), m.ideal_gains(truth.relevance, k), k),
                f"ndcg_graded@{k}": m.ndcg_at_k(gains, m.ideal_gains(truth.grades, k), k),
                f"map@{k}": m.map_at_k(hits, truth.n_relevant, k),
                f"hit_rate@{k}": m.hit_rate_at_k(hits, k),
                f"coverage@{k}": m.catalog_coverage(index, n_items, k),
                f"novelty@{k}": m.novelty(index, self.information, k),
                f"serendipity@{k}": m.serendipity(index, hits, self.expected, k),
                f"ild@{k}": m.intra_list_diversity(index, self.features, k),
                f"arp@{k}": m.average_recommendation_popularity(index, self.popularity_share, k),
                f"gini@{k}": m.gini_exposure(index, n_items, k),
            }
        return out


def evaluate_recommender(
    recs: np.ndarray, ground_truth: HeldOutTruth, train: pd.DataFrame, catalog: pd.DataFrame, ks: Iterable[int] = (10, 100)
) -> dict[str, float | int]:
    """All metrics at every K for ``recs`` (item ids, rows aligned with ``ground_truth.user_ids``)."""
    ks = tuple(ks)
    return EvaluationContext.build(ground_truth, train, catalog, max(ks)).evaluate(recs, ks)


def merged_recall(candidate_lists: Mapping[str, np.ndarray], ground_truth: HeldOutTruth, k: int) -> float:
    """Recall@k of the union: mean_u |(C_1,k(u) ∪ ... ∪ C_n,k(u)) ∩ R(u)| / |R(u)|, where C_r,k(u) is
    retriever r's top-k for u (each list an ``(n_users, >=k)`` item-id matrix aligned with the ground truth)."""
    merged = np.sort(np.hstack([ground_truth.items.encode(np.asarray(c)[:, :k]) for c in candidate_lists.values()]), axis=1)
    first = np.ones(merged.shape, dtype=bool)
    first[:, 1:] = merged[:, 1:] != merged[:, :-1]
    hits = (m.gather(merged, ground_truth.relevance) > 0) & first
    return float(np.mean(hits.sum(axis=1) / ground_truth.n_relevant))


def evaluation_slices(
    context: EvaluationContext, split: TemporalSplit, catalog: pd.DataFrame
) -> dict[str, tuple[EvaluationContext, np.ndarray]]:
    """The slices of every comparison table: ``all`` test users, ``warm_users`` (> COLD_USER_EVENTS
    training events), ``cold_users`` (<= COLD_USER_EVENTS), ``cold_items`` (ground truth restricted to
    items launched in the test period); each with the row numbers of its users in the full context."""
    truth = context.ground_truth
    cold = users_with_few_events(split.train, truth.user_ids, COLD_USER_EVENTS)
    new_items = np.isin(truth.items.ids, items_launched_between(catalog, split.test_start, split.test_end))
    return {
        "all": (context, np.arange(len(truth.user_ids))),
        "warm_users": context.restrict(users=~cold),
        "cold_users": context.restrict(users=cold),
        "cold_items": context.restrict(items=new_items),
    }


def run_baselines(
    data: DomainData,
    *,
    split: TemporalSplit | None = None,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    ks: tuple[int, ...] = (10, 100),
    positive_events: Collection[str] | None = None,
    models: Iterable[type[Recommender]] = BASELINES,
    tune: bool = True,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every baseline on one temporal split: one row per (model, slice), one column per metric.

    ``split`` defaults to :func:`split_by_time_fraction` of the two fractions. Positives default to the
    domain's conversion event. Slices (:func:`evaluation_slices`): ``all`` test users, ``warm_users``
    (> COLD_USER_EVENTS training events), ``cold_users`` (<= COLD_USER_EVENTS), ``cold_items`` (ground
    truth restricted to items launched in the test period). Timing columns are wall seconds; the
    split's cut points are in ``table.attrs``.
    """
    say = progress or (lambda _msg: None)
    positives = tuple(positive_events or (domain_config(data.domain).conversion_event,))
    split = split or split_by_time_fraction(data.interactions, test_fraction, validation_fraction)
    truth = build_ground_truth(split.test, split.train, data.catalog, positives)
    say(f"split: train < {split.test_start:%Y-%m-%d} <= test <= {split.test_end:%Y-%m-%d}; validation from "
        f"{split.validation_start:%Y-%m-%d}; {len(truth.user_ids)} test users with {positives} positives")
    slices = evaluation_slices(EvaluationContext.build(truth, split.train, data.catalog, max(ks)), split, data.catalog)
    table: list[dict[str, object]] = []
    for model in models:
        started = time.perf_counter()
        params = {}
        if tune and model.search_space:
            params = grid_search(model, model.search_space, split, data.catalog, data.users, positives, progress=say).params
        tuned = time.perf_counter()
        fitted = model(**params).fit(split.train, data.catalog, data.users)
        fit_done = time.perf_counter()
        recs = fitted.recommend(truth.user_ids, max(ks))
        timing = {"params": str(fitted.params), "tune_s": tuned - started, "fit_s": fit_done - tuned,
                  "recommend_s": time.perf_counter() - fit_done}
        say(f"{model.name}: {fitted.params} tune {timing['tune_s']:.1f}s fit {timing['fit_s']:.1f}s "
            f"recommend {timing['recommend_s']:.1f}s")
        for name, (ctx, rows) in slices.items():
            table.append({"model": model.name, "slice": name, **ctx.evaluate(recs[rows], ks), **timing})
    frame = pd.DataFrame(table)
    frame.attrs.update(domain=data.domain, positives=list(positives), test_start=str(split.test_start),
                       test_end=str(split.test_end), validation_start=str(split.validation_start))
    return frame
