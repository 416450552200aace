"""Off-policy check of a candidate re-ranking policy, then the same policy actually served.

The logging policy is serving's re-ranker with its configured exploration share: ``n`` of the ``R``
slots from ``min_position`` on are drawn uniformly and filled with items drawn uniformly from a pool
of ``M`` out-of-profile items (logged propensity ``n/R/M``); an exploited slot in that range had
``1 - n/R``. The candidate is the same re-ranker with another exploration share, so on every logged
randomised slot its probability is known exactly: ``n'/R/M`` for the explored item, ``1 - n'/R`` for
the exploited one (``n'`` from the candidate share, the slate size and the diversity cap, as serving
computes it). IPS / SNIPS (:func:`experiments.ope.evaluate_policy`) then estimate its click rate per
randomised slot from the logs alone.

The check: the same simulated day (same users, same requests, a copy of the world's state) served
once by the logging policy (the logs) and once by the candidate (a second service process whose
settings carry the candidate share). On the candidate's randomised slots the simulator gives the
realised click rate and its exact expectation (examination x true relevance, no sampling noise).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from experiments.ope import evaluate_policy, exploration_log
from loop.service import ServiceClient
from loop.simulate import serve_day
from serving.reranking import diversity_cap
from serving.settings import RerankRules
from simulation.truth import GroundTruth

EXPLORATION = "exploration"


def explored_slots(rules: RerankRules, share: float, k: int, pool: int) -> int:
    """How many exploration slots serving draws for a slate of ``k`` (as ``serving.reranking._explore``)."""
    span = k - rules.exploration.min_position
    wanted = min(math.floor(share * k + 1e-9), span, diversity_cap(k, rules.diversity.max_share))
    return max(0, min(wanted, pool))


def target_propensities(slates: pd.DataFrame, rules: RerankRules, candidate_share: float) -> pd.DataFrame:
    """``request_id, item_id, target_propensity`` of the candidate on every randomised logged slot."""
    start = rules.exploration.min_position
    rows = []
    for slate in slates.itertuples(index=False):
        k = len(slate.items)
        explored = [j for j, reasons in enumerate(slate.reasons) if EXPLORATION in reasons]
        span = k - start
        if not explored or span <= 0:
            continue
        n = len(explored)
        pool = int(round(n / (span * slate.propensities[explored[0]])))  # logged n/R/M gives M
        n_target = explored_slots(rules, candidate_share, k, pool)
        for j in range(start, k):
            p = n_target / span / pool if j in explored else 1.0 - n_target / span
            rows.append((slate.request_id, slate.items[j], p))
    return pd.DataFrame(rows, columns=["request_id", "item_id", "target_propensity"])


def measured_value(truth: GroundTruth, slates: pd.DataFrame, events: pd.DataFrame) -> dict[str, float]:
    """On the randomised slots (propensity < 1) of the served slates: realised and expected click rate
    (``truth`` in its state before the day was served)."""
    slots = [(s.request_id, s.user_id, item, j + 1) for s in slates.itertuples(index=False)
             for j, (item, p) in enumerate(zip(s.items, s.propensities, strict=True)) if p < 1.0]
    if not slots:
        return {"slots": 0, "realised": float("nan"), "expected": float("nan")}
    frame = pd.DataFrame(slots, columns=["request_id", "user_id", "item_id", "position"])
    clicks = events[events["event_type"] == "click"][["request_id", "item_id"]].drop_duplicates().assign(clicked=1.0)
    frame = frame.merge(clicks, on=["request_id", "item_id"], how="left").fillna({"clicked": 0.0})
    expected = truth.examination(frame["position"].to_numpy()) * truth.relevance(frame["user_id"].to_numpy(),
                                                                                frame["item_id"].to_numpy())
    return {"slots": len(frame), "realised": float(frame["clicked"].mean()), "expected": float(np.mean(expected))}


@dataclass(frozen=True)
class OPECheck:
    domain: str
    day: str
    logging_share: float
    candidate_share: float
    estimates: dict[str, dict[str, Any]]  # ips / snips: value, ci, slots, effective sample size, logged reward
    candidate: dict[str, float]  # measured when served: slots, realised, expected
    logging: dict[str, float]  # the logging policy on its own randomised slots

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "day": self.day, "logging_share": self.logging_share,
                "candidate_share": self.candidate_share, "estimates": self.estimates,
                "candidate_measured": self.candidate, "logging_measured": self.logging,
                "covered": {name: bool(e["ci"][0] <= self.candidate["expected"] <= e["ci"][1])
                            for name, e in self.estimates.items()}}


def ope_check(logging_client: ServiceClient, candidate_client: ServiceClient, truth: GroundTruth, day: date,
              slate_size: int, rules: RerankRules, candidate_share: float, seed: int,
              max_requests: int | None = None) -> OPECheck:
    """Serve ``day`` twice from the same state (logging policy, then candidate) and compare the
    off-policy estimate from the first with what the second measures. Nothing is posted: both are
    replicas of one day."""
    logged_truth, served_truth = copy.deepcopy(truth), copy.deepcopy(truth)
    slates, events, _ = serve_day(logging_client, logged_truth, day, slate_size, np.random.default_rng(seed),
                                  max_requests, post=False)
    log = exploration_log(events, reward="click")
    estimates = evaluate_policy(log, target_propensities(slates, rules, candidate_share)) if len(log) else {}
    c_slates, c_events, _ = serve_day(candidate_client, served_truth, day, slate_size, np.random.default_rng(seed),
                                      max_requests, post=False)
    return OPECheck(truth.domain, day.isoformat(), rules.exploration.share, candidate_share,
                    {name: e.as_dict() for name, e in estimates.items()},
                    measured_value(truth, c_slates, c_events), measured_value(truth, slates, events))
