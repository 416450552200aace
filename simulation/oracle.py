"""Judging recommendations against the truth: expected outcomes of slates and the ideal items.

Expectations use the true behaviour model, so they are exact (no sampling noise) and let an
offline evaluation or an A/B simulation compare policies on what users would really do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from simulation.behavior import expected_quantity
from simulation.truth import GroundTruth

Objective = Literal["relevance", "conversion", "value"]
USER_CHUNK = 512


def _item_scores(truth: GroundTruth, users: np.ndarray, items: np.ndarray, objective: Objective) -> np.ndarray:
    """Per (user, item) pair (broadcast): P(click|examined), P(conversion|examined) or the expected
    value given examined (retail: revenue = price x expected quantity; banking: the conversion)."""
    relevance = truth.relevance_idx(users, items)
    if objective == "relevance":
        return relevance
    if truth.domain == "retail":
        conversion = relevance * truth.cart_probability_idx(users, items) * truth.checkout_probability_idx(users, items)
        if objective == "value":
            return conversion * truth.price[items] * expected_quantity(truth, items)
        return conversion
    # banking: the business goal is the approved application itself, so value = conversion
    return relevance * truth.application_probability_idx(users, items) * truth.approval_probability_idx(users, items)


def expected_outcomes(truth: GroundTruth, user_ids: Sequence[str], slates: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Per slate: expected clicks, conversions (retail purchases / banking approvals) and value (retail
    revenue, banking approvals), with slot ``p`` examined with probability ``truth.examination(p)``."""
    users = truth.user_index(np.asarray(user_ids))
    rows = []
    for u, slate in zip(users, slates, strict=True):
        items = truth.item_index(list(slate))
        exam = truth.examination(np.arange(1, len(items) + 1))
        user = np.full(len(items), u)
        rows.append({
            "expected_clicks": float(exam @ _item_scores(truth, user, items, "relevance")),
            "expected_conversions": float(exam @ _item_scores(truth, user, items, "conversion")),
            "expected_value": float(exam @ _item_scores(truth, user, items, "value")),
        })
    return pd.DataFrame(rows, columns=["expected_clicks", "expected_conversions", "expected_value"])


def best_items(truth: GroundTruth, user_ids: Sequence[str], k: int, objective: Objective = "relevance",
               available: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` truly best item ids per user, best first (an oracle for recall/NDCG against the truth).

    ``available`` (bool per item) restricts the candidates, e.g. to items launched by a date.
    """
    users = truth.user_index(np.asarray(user_ids))
    candidates = np.flatnonzero(available) if available is not None else np.arange(len(truth.item_ids))
    out = np.empty((len(users), min(k, len(candidates))), dtype=truth.item_ids.dtype)
    for start in range(0, len(users), USER_CHUNK):
        chunk = users[start:start + USER_CHUNK]
        scores = _item_scores(truth, chunk[:, None], candidates[None, :], objective)
        top = np.argsort(-scores, axis=1, kind="stable")[:, : out.shape[1]]
        out[start:start + len(chunk)] = truth.item_ids[candidates[top]]
    return out
