"""Fixtures of the end-to-end tests: the serving tests' small real world, re-used rather than rebuilt.

``world`` and ``publish`` are the session fixtures of ``tests/serving/conftest.py`` (trained retrievers,
a filled Feast SQLite store, the release template). A conftest only serves its own directory, and with
``--import-mode=importlib`` it cannot be imported by name, so it is loaded here from its file and its
two fixtures are re-exported unchanged.

``interest_ranker`` is the one part that is not the serving world's: that world's ranker is trained for
a single epoch (its tests need a ranker that loads and scores, not one that learned anything), and its
score is not even monotone in ``x_cat_views`` -- on a probe batch of the 48 items its mean score was 0.84
at 0 interactions in the category, 0.79 at 4, 0.96 at 8 -- so no slate could rise through it reliably.
The e2e release swaps in a ranker with the same feature lists, fitted until it has learned the world's
one behavioural rule that matters here: users click in categories they interact with.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest


def _serving_world() -> ModuleType:
    name = "e2e_serving_world_conftest"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "serving" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return module


SERVING_WORLD = _serving_world()
world = SERVING_WORLD.world
publish = SERVING_WORLD.publish


def _interest_examples(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Impressions in the serving world's feature ranges; the click odds grow with the user's
    interactions in the candidate's category (logit -3.0 + 1.2 per interaction, capped at 4)."""
    frame = pd.DataFrame({
        "price": rng.uniform(5, 150, n), "margin": rng.choice([0.15, 0.5], n), "popularity_7d": rng.integers(0, 48, n),
        "ctr_7d": np.full(n, 0.05), "purchase_count_30d": rng.integers(0, 2, n), "x_item_views": rng.integers(0, 3, n),
        "x_cat_views": rng.integers(0, 6, n), "hour_of_day": rng.integers(0, 24, n),
    }).astype("float32")
    frame["category_l1"] = rng.choice(["Shoes", "Shirts", "Bags", "Hats"], n)
    frame["device_type"] = rng.choice(["web", "ios"], n)
    frame["country"] = rng.choice(["DE", "FR"], n)
    click_odds = 1.0 / (1.0 + np.exp(3.0 - 1.2 * np.minimum(frame["x_cat_views"].to_numpy(), 4.0)))
    frame["clicked"] = (rng.random(n) < click_odds).astype("float32")
    return frame


@pytest.fixture(scope="session")
def interest_ranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ranker directory (fast export) with the serving world's feature lists whose score rises with
    every interaction in the candidate's category (``x_cat_views`` 0..4, checked on fresh rows), so a
    test failing later is about the pipeline, not this model. ~5-10 s of training."""
    from models.ranking.config import RankerConfig
    from models.ranking.export import EXPORT_DIRS, load_scorer
    from models.ranking.fast_export import export_numpy
    from models.ranking.train import train_ranker

    out = tmp_path_factory.mktemp("interest_ranker")
    frame = _interest_examples(np.random.default_rng(11), 4096)
    config = RankerConfig(numeric=list(SERVING_WORLD.RANKER_NUMERIC), categorical=list(SERVING_WORLD.RANKER_CATEGORICAL),
                          log1p=[], structure="stacked", position_correction=False, deep_layers=(8,), cross_layers=1,
                          embedding_dim=4, epochs=10, batch_size=256, seed=3)
    export_numpy(train_ranker(frame[:3584], frame[3584:], config, verbose=False), out / EXPORT_DIRS["fast"])

    probe = _interest_examples(np.random.default_rng(12), 64).drop(columns="clicked")
    scorer = load_scorer(out, "fast")
    scores = np.array([scorer.score({**{c: probe[c].to_numpy() for c in probe}, "x_cat_views": np.full(64, v, "float32")})
                       for v in range(5)])
    rising = (scores[1:] > scores[:-1]).mean(axis=1)
    assert (rising >= 0.95).all(), f"the e2e ranker did not learn the category signal (share of rows rising {rising})"
    return out
