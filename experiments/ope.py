"""Off-policy evaluation of a candidate policy from the logged exploration slots.

Serving logs, with every impression, the probability ``p`` that its policy showed that item in that
slot (``propensity``). For the randomised slots (``p < 1``) a candidate policy that would show the
same item in the same slot with probability ``pi`` has importance weight ``w = pi / p``, and

- IPS:   ``V = (1/n) sum w_i r_i``            (unbiased if ``p > 0`` wherever ``pi > 0``)
- SNIPS: ``V = sum w_i r_i / sum w_i``        (self-normalised: a little bias, much less variance)
- effective sample size ``(sum w)^2 / sum w^2`` says how many logged slots the estimate is worth.

Intervals are percentile bootstraps that resample whole requests (slots of one slate are not
independent), with the vectorised resampler of :mod:`experiments.stats`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from experiments.stats import bootstrap_sums

REWARDS = {"click": ("click",), "conversion": ("purchase", "application_approved")}


@dataclass(frozen=True)
class OPEEstimate:
    estimator: str  # ips | snips
    value: float
    ci: tuple[float, float]
    slots: int
    effective_sample_size: float
    logged_reward: float  # mean reward of the logging policy on the same slots

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def importance_weights(target: np.ndarray, logged: np.ndarray) -> np.ndarray:
    target, logged = np.asarray(target, dtype=np.float64), np.asarray(logged, dtype=np.float64)
    if np.any((logged <= 0) | (logged > 1)) or np.any((target < 0) | (target > 1)):
        raise ValueError("propensities must lie in (0, 1] (logged) and [0, 1] (target)")
    return target / logged


def effective_sample_size(weights: np.ndarray) -> float:
    squares = float(np.sum(weights**2))
    return float(np.sum(weights) ** 2 / squares) if squares > 0 else 0.0


def estimate(
    rewards: np.ndarray, logged: np.ndarray, target: np.ndarray, clusters: np.ndarray | None = None,
    n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
) -> dict[str, OPEEstimate]:
    """IPS and SNIPS estimates of the candidate's mean reward per slot, with bootstrap intervals.

    ``clusters`` (e.g. request ids) groups slots that are resampled together; default: each slot alone.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    weights = importance_weights(target, logged)
    groups = pd.factorize(clusters, use_na_sentinel=False)[0] if clusters is not None else np.arange(len(rewards))
    per_cluster = [np.bincount(groups, col, minlength=groups.max(initial=-1) + 1) for col in
                   (weights * rewards, weights, np.ones(len(rewards)))]
    sums = bootstrap_sums(per_cluster, n_boot, np.random.default_rng(seed))
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    n = len(rewards)
    ess = effective_sample_size(weights)
    logged_reward = float(rewards.mean()) if n else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = {"ips": sums[:, 0] / sums[:, 2], "snips": sums[:, 0] / sums[:, 1]}
        point = {"ips": float(np.sum(weights * rewards) / n) if n else float("nan"),
                 "snips": float(np.sum(weights * rewards) / np.sum(weights)) if weights.sum() else float("nan")}
    out = {}
    for name, values in boot.items():
        finite = values[np.isfinite(values)]
        low, high = np.quantile(finite, q) if len(finite) else (float("nan"), float("nan"))
        out[name] = OPEEstimate(name, point[name], (float(low), float(high)), n, ess, logged_reward)
    return out


def exploration_log(events: pd.DataFrame, reward: str = "click") -> pd.DataFrame:
    """The randomised slots of the logged impressions (``propensity < 1``) with their reward (0/1: a
    ``reward`` event -- ``click`` or ``conversion`` -- on the same request and item)."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {sorted(REWARDS)}")
    impressions = events[(events["event_type"] == "impression") & (events["propensity"] < 1)]
    rewarded = events[events["event_type"].isin(REWARDS[reward]) & events["request_id"].notna()]
    keys = rewarded[["request_id", "item_id"]].drop_duplicates().assign(reward=1.0)
    columns = ["request_id", "item_id", "position", "user_id", "arm", "propensity"]
    log = impressions[columns].merge(keys, on=["request_id", "item_id"], how="left")
    return log.assign(reward=log["reward"].fillna(0.0)).reset_index(drop=True)


def evaluate_policy(log: pd.DataFrame, target: pd.DataFrame, n_boot: int = 2000, alpha: float = 0.05,
                    seed: int = 0) -> dict[str, OPEEstimate]:
    """Join the candidate policy's probabilities (``request_id, item_id, target_propensity``; a logged
    slot it does not list has probability 0) to the exploration log and estimate its reward."""
    merged = log.merge(target[["request_id", "item_id", "target_propensity"]], on=["request_id", "item_id"],
                       how="left")
    return estimate(merged["reward"].to_numpy(), merged["propensity"].to_numpy(),
                    merged["target_propensity"].fillna(0.0).to_numpy(), merged["request_id"].to_numpy(),
                    n_boot, alpha, seed)
