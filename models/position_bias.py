"""Position-bias experiment on the synthetic world, where the true relevance of every (user, item) is known.

The same ranking set (the Spark job's logged impressions, ``paths.training(domain, "ranking")``), the
same features, split and seed train two rankers: one with the position tower (position-bias
correction, served without it) and one without. Each then re-orders the held-out slates (the latest
``test_fraction`` of the impressions, whole requests), and NDCG@10 is computed against TRUE relevance
(``simulation.truth.GroundTruth.relevance``: P(click | examined)), with the logged order and a random
order as references. The clicks the rankers learn from are confounded by position
(examination = 1 / position ** eta); the truth is not.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from common.features import EVENT_TIMESTAMP
from common.paths import DataPaths
from models.release import ranker_frame

K = 10


def slate_ndcg(frame: pd.DataFrame, scores: np.ndarray, gains: np.ndarray, k: int = K) -> float:
    """Mean over requests of DCG@k of the items ordered by ``scores`` / the ideal DCG@k of the same items."""
    ordered = frame[["request_id"]].assign(_s=scores, _g=gains)
    values = []
    for _, part in ordered.groupby("request_id", sort=False):
        g = part["_g"].to_numpy()
        by_score = g[np.argsort(-part["_s"].to_numpy(), kind="stable")][:k]
        ideal = np.sort(g)[::-1][:k]
        discount = 1.0 / np.log2(np.arange(2, len(by_score) + 2))
        best = float(ideal @ discount)
        if best > 0:
            values.append(float(by_score @ discount) / best)
    return float(np.mean(values))


def split_requests(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later): requests whose first impression is in the latest ``fraction`` of time go later."""
    start = frame.groupby("request_id")[EVENT_TIMESTAMP].transform("min")
    cut = start.quantile(1.0 - fraction)
    return frame[start <= cut], frame[start > cut]


def position_bias_experiment(paths: DataPaths, domain: str, test_fraction: float = 0.25, valid_fraction: float = 0.15,
                             config: Any = None, verbose: bool = False) -> dict[str, Any]:
    """Corrected vs uncorrected ranker, NDCG@10 against true relevance on held-out slates (one run)."""
    from models.ranking.config import RankerConfig
    from models.ranking.train import train_ranker
    from simulation.truth import GroundTruth

    raw = pd.read_parquet(paths.training(domain, "ranking"))
    base = config or RankerConfig(structure="stacked")
    numeric = [n for n in base.numeric if n in raw.columns]
    categorical = [n for n in base.categorical if n in raw.columns]
    base = replace(base, numeric=numeric, categorical=categorical, log1p=[n for n in base.log1p if n in numeric])
    frame = ranker_frame(raw, numeric, categorical)
    earlier, test = split_requests(frame, test_fraction)
    train, valid = split_requests(earlier, valid_fraction)
    truth = GroundTruth.load(paths, domain)
    gains = truth.relevance(test["user_id"].to_numpy(), test["item_id"].to_numpy())
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "domain": domain, "train_impressions": len(train), "valid_impressions": len(valid),
        "test_requests": int(test["request_id"].nunique()), "click_rate": float(train["clicked"].mean()),
        "ndcg@10_true": {"logged_order": slate_ndcg(test, -test["position"].to_numpy(float), gains),
                         "random_order": slate_ndcg(test, rng.random(len(test)), gains)},
        "validation_auc": {},
    }
    for corrected in (True, False):
        name = "corrected" if corrected else "uncorrected"
        trained = train_ranker(train, valid, replace(base, position_correction=corrected), verbose=verbose)
        out["ndcg@10_true"][name] = slate_ndcg(test, trained.predict(test)["score"], gains)
        out["validation_auc"][name] = trained.metrics["auc"]
    out["gain"] = out["ndcg@10_true"]["corrected"] - out["ndcg@10_true"]["uncorrected"]
    return out
