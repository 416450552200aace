"""Temporal split of an interactions frame, cold-start slices and the held-out ground truth.

Time line (one global cut for all users, so no model ever trains on the future)::

    fit ................ | validation            | test
    [min, v)               [v, t1)                 [t1, t2]
    train = fit + validation = everything before t1

- ``test`` = interactions in ``[t1, t2]``: the final, reported evaluation.
- ``validation`` = the last window INSIDE the training period, ``[v, t1)``: hyperparameters are tuned
  by fitting on ``fit`` (before ``v``) and scoring on ``validation``; the test period is never looked at.
- Cold-start slices: users with at most ``max_events`` training events (zero included: users who
  arrive during the test period), and items launched in the test period (``launched_at`` in ``[t1, t2]``).

Ground truth (``build_ground_truth``): a held-out (user, item) pair is *relevant* if it has an event
of one of ``positive_events`` (MovieLens: ``purchase`` = rating >= 4). Its *grade* (graded NDCG) is
the summed weight of all its held-out events; pairs with only non-positive events (a MovieLens rating
< 4: a ``view``, weight 1) stay in the graded matrix with their smaller grade, so graded NDCG gives
partial credit for items the user engaged with but did not convert on. By default
(``exclude_seen=True``) pairs already present in training are dropped: every domain is configured
``repurchase_allowed: false`` and the recommenders exclude seen items, so re-finding them would only
reward memorisation. Only users with at least one relevant pair are evaluated.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation.data import ItemVocabulary, user_item_matrix


@dataclass(frozen=True)
class TemporalSplit:
    train: pd.DataFrame  # timestamp < test_start
    test: pd.DataFrame  # test_start <= timestamp <= test_end
    fit: pd.DataFrame  # timestamp < validation_start (the training data while tuning)
    validation: pd.DataFrame  # validation_start <= timestamp < test_start
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def temporal_split(
    interactions: pd.DataFrame,
    test_start: pd.Timestamp,
    validation_start: pd.Timestamp,
    test_end: pd.Timestamp | None = None,
) -> TemporalSplit:
    """Cut ``interactions`` at ``validation_start < test_start <= test_end`` (default: the last event)."""
    ts = interactions["timestamp"]
    test_end = ts.max() if test_end is None else test_end
    if not validation_start < test_start <= test_end:
        raise ValueError(f"need validation_start < test_start <= test_end, got {validation_start}, {test_start}, {test_end}")
    before_test = ts < test_start
    before_validation = ts < validation_start
    parts = {
        "train": interactions[before_test],
        "test": interactions[(ts >= test_start) & (ts <= test_end)],
        "fit": interactions[before_validation],
        "validation": interactions[before_test & ~before_validation],
    }
    empty = [name for name, frame in parts.items() if frame.empty]
    if empty:
        raise ValueError(f"the split leaves {empty} empty; move the cut points")
    return TemporalSplit(
        **{name: frame.reset_index(drop=True) for name, frame in parts.items()},
        validation_start=validation_start,
        test_start=test_start,
        test_end=test_end,
    )


def split_by_time_fraction(
    interactions: pd.DataFrame, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> TemporalSplit:
    """Test = the last ``test_fraction`` of the global time span; validation = the
    ``validation_fraction`` of the span just before it (both fractions of ``max - min`` timestamp)."""
    if not (0 < test_fraction and 0 < validation_fraction and test_fraction + validation_fraction < 1):
        raise ValueError("fractions must be positive and sum to less than 1")
    first, last = interactions["timestamp"].min(), interactions["timestamp"].max()
    span = last - first
    test_start = last - span * test_fraction
    return temporal_split(interactions, test_start, test_start - span * validation_fraction, last)


def users_with_few_events(train: pd.DataFrame, user_ids: np.ndarray, max_events: int = 2) -> np.ndarray:
    """Bool mask over ``user_ids``: at most ``max_events`` interaction rows in ``train`` (0 = new user)."""
    counts = train["user_id"].value_counts()
    return counts.reindex(pd.Index(user_ids), fill_value=0).to_numpy() <= max_events


def items_launched_between(catalog: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Item ids whose ``launched_at`` lies in ``[start, end]`` (cold-start items of that period)."""
    launched = pd.to_datetime(catalog["launched_at"], utc=True)
    return catalog.loc[(launched >= start) & (launched <= end), "item_id"].astype(str).to_numpy(dtype=object)


@dataclass(frozen=True)
class HeldOutTruth:
    """Held-out relevance of the evaluated users, rows aligned with ``user_ids``, columns with ``items``."""

    user_ids: np.ndarray
    items: ItemVocabulary
    relevance: sp.csr_matrix  # 1.0 for every relevant pair
    grades: sp.csr_matrix  # graded relevance (summed event weights), a superset of relevance's pattern

    @property
    def n_relevant(self) -> np.ndarray:
        return np.diff(self.relevance.indptr)

    def restrict(
        self, users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> tuple[HeldOutTruth, np.ndarray]:
        """Keep users in the bool mask ``users`` and item columns in the bool mask ``items``; drop users
        left without a relevant item. Returns the slice and the kept row numbers (to slice recs with)."""
        user_mask = np.ones(len(self.user_ids), bool) if users is None else np.asarray(users, bool)
        column_filter = sp.diags((np.ones(len(self.items)) if items is None else np.asarray(items)).astype(np.float32))
        relevance, grades = (sp.csr_matrix(m @ column_filter) for m in (self.relevance, self.grades))
        for m in (relevance, grades):
            m.eliminate_zeros()
        rows = np.flatnonzero(user_mask & (np.diff(relevance.indptr) > 0))
        return HeldOutTruth(self.user_ids[rows], self.items, relevance[rows], grades[rows]), rows


def build_ground_truth(
    test: pd.DataFrame,
    train: pd.DataFrame,
    catalog: pd.DataFrame,
    positive_events: Collection[str],
    exclude_seen: bool = True,
) -> HeldOutTruth:
    """Relevant and graded held-out pairs of ``test`` (see the module docstring for the rules)."""
    flagged = test.assign(positive=test["event_type"].isin(list(positive_events)))
    pairs = flagged.groupby(["user_id", "item_id"], sort=True).agg(weight=("weight", "sum"), positive=("positive", "any"))
    if exclude_seen:
        pairs = pairs[~pairs.index.isin(pd.MultiIndex.from_frame(train[["user_id", "item_id"]]))]
    pairs = pairs.reset_index()
    user_ids = np.asarray(sorted(set(pairs.loc[pairs["positive"], "user_id"])), dtype=object)
    items = ItemVocabulary.from_catalog(catalog)
    relevance = user_item_matrix(pairs[pairs["positive"]], user_ids, items, binary=True)
    grades = user_item_matrix(pairs, user_ids, items)
    return HeldOutTruth(user_ids, items, relevance, grades)
