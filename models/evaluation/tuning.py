"""Hyperparameter grid search on the validation window (never on the test period).

Every grid point is fitted on ``split.fit`` (before the validation window) and scored by NDCG@k on
``split.validation``, over the validation users who have history in ``split.fit``: users without
history get the same popularity fallback from every setting, so they would only dilute the signal.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.evaluation.baselines import Recommender
from models.evaluation.metrics import gather, ideal_gains, ndcg_at_k
from models.evaluation.split import HeldOutTruth, TemporalSplit, build_ground_truth, users_with_few_events


@dataclass(frozen=True)
class TuningResult:
    params: dict[str, Any]  # the best grid point
    scores: pd.DataFrame  # one row per grid point: its parameters and the validation score


def validation_ground_truth(
    split: TemporalSplit, catalog: pd.DataFrame, positive_events: Collection[str]
) -> HeldOutTruth:
    """Relevant validation-window pairs of the users with history before the window."""
    truth = build_ground_truth(split.validation, split.fit, catalog, positive_events)
    warm, _ = truth.restrict(users=~users_with_few_events(split.fit, truth.user_ids, max_events=0))
    if len(warm.user_ids) == 0:
        raise ValueError("no validation user has history before the validation window; widen the window")
    return warm


def grid_search(
    model: type[Recommender],
    grid: Mapping[str, Sequence[Any]],
    split: TemporalSplit,
    catalog: pd.DataFrame,
    users: pd.DataFrame,
    positive_events: Collection[str],
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> TuningResult:
    """Fit ``model(**point)`` for every point of ``grid``; the best validation NDCG@k wins (first on ties)."""
    truth = validation_ground_truth(split, catalog, positive_events)
    ideal = ideal_gains(truth.relevance, k)
    rows: list[dict[str, Any]] = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        recs = model(**params).fit(split.fit, catalog, users).recommend(truth.user_ids, k)
        score = ndcg_at_k(gather(truth.items.encode(recs), truth.relevance), ideal, k)
        rows.append({**params, f"val_ndcg@{k}": score})
        if progress:
            progress(f"  {model.name} {params}: validation NDCG@{k} = {score:.4f} ({len(truth.user_ids)} users)")
    scores = pd.DataFrame(rows)
    best = rows[int(scores[f"val_ndcg@{k}"].to_numpy().argmax())]
    return TuningResult({name: best[name] for name in grid}, scores)
