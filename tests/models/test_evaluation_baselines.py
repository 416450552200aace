"""Baselines on a tiny planted world: two item clusters, each liked by one user segment.

Cluster A (a0..a5) is liked by the users of country X, cluster B (b0..b5) by country Y; ten filler items
nobody touches. Each user picks 5 items of their cluster (skewed towards a0/b0, so popularity carries
signal): the first 3 are training data, the last 2 the held-out truth. A model that learned the
item-item structure ranks the 3 unseen items of the user's cluster first, so recall@3 = 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation.baselines import (
    ALSRecommender,
    EASERecommender,
    PopularityRecommender,
    RandomRecommender,
    Recommender,
    SegmentPopularityRecommender,
)
from models.evaluation.segments import assign_segments, segment_level, segment_rule

CLUSTERS = {"X": [f"a{i}" for i in range(6)], "Y": [f"b{i}" for i in range(6)]}
FILLER = [f"f{i}" for i in range(10)]


def planted(users_per_cluster: int = 40, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    rows, users, truth = [], [], {}
    popularity = np.array([6, 5, 4, 3, 2, 1], dtype=float) / 21  # within-cluster skew
    for country, items in CLUSTERS.items():
        for n in range(users_per_cluster):
            user = f"{country}{n}"
            picked = rng.choice(6, size=5, replace=False, p=popularity)
            rows += [(user, items[i], pd.Timestamp("2024-01-01", tz="UTC"), "view", 1.0) for i in picked[:3]]
            truth[user] = {items[i] for i in picked[3:]}
            users.append((user, country, "25-34"))
    catalog = pd.DataFrame({"item_id": [*CLUSTERS["X"], *CLUSTERS["Y"], *FILLER]})
    catalog["category"] = "Shop>" + catalog["item_id"].str[0]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type", "weight"])
    return train, catalog, pd.DataFrame(users, columns=["user_id", "country", "age_band"]), truth


TRAIN, CATALOG, USERS, TRUTH = planted()
USER_IDS = np.array(sorted(TRUTH), dtype=object)


def recall(recs: np.ndarray) -> float:
    """Set-based recall, independent of models.evaluation.metrics."""
    return float(np.mean([len(set(row) & TRUTH[u]) / len(TRUTH[u]) for u, row in zip(USER_IDS, recs, strict=True)]))


def fitted(model: Recommender) -> Recommender:
    return model.fit(TRAIN, CATALOG, USERS)


ALL = [RandomRecommender(seed=1), PopularityRecommender(), SegmentPopularityRecommender(),
       EASERecommender(l2=100.0), ALSRecommender(factors=2, regularization=0.01, iterations=20, seed=3)]


@pytest.mark.parametrize("model", ALL, ids=lambda m: m.name)
def test_lists_have_k_distinct_unseen_catalog_items(model: Recommender) -> None:
    recs = fitted(model).recommend(USER_IDS, 5)
    assert recs.shape == (len(USER_IDS), 5)
    seen = TRAIN.groupby("user_id")["item_id"].agg(set)
    for user, row in zip(USER_IDS, recs, strict=True):
        assert len(set(row)) == 5 and set(row) <= set(CATALOG["item_id"])
        assert not set(row) & seen[user]
    with pytest.raises(ValueError):
        model.recommend(USER_IDS, len(CATALOG) + 1)


def test_every_baseline_beats_random_and_structure_is_recovered() -> None:
    recs = {m.name: fitted(m).recommend(USER_IDS, 3) for m in ALL}
    scores = {name: recall(r) for name, r in recs.items()}
    # random: 3 of the 19 unseen items, 2 of them relevant -> 3/19 = 0.16 expected
    assert scores["random"] < 0.3
    # popularity is structure-blind (its list mixes both clusters) but knows the skew
    assert scores["random"] + 0.1 < scores["popularity"] < 0.8
    # the segment (country) and the collaborative models rank the user's own cluster first
    for name in ("segment_popularity", "ease", "als"):
        assert scores[name] >= 0.95, (name, scores)
        in_own_cluster = [item in CLUSTERS[u[0]] for u, row in zip(USER_IDS, recs[name], strict=True) for item in row]
        assert np.mean(in_own_cluster) >= 0.95, name


def test_ease_weights_recover_the_planted_item_item_structure() -> None:
    ease = fitted(EASERecommender(l2=100.0))
    weights = np.zeros((len(ease.items), len(ease.items)))
    weights[np.ix_(ease._active, ease._active)] = ease._weights
    index = {item: i for i, item in enumerate(ease.items.ids)}
    a = [index[i] for i in CLUSTERS["X"]]
    b = [index[i] for i in CLUSTERS["Y"]]
    within = weights[np.ix_(a, a)][~np.eye(6, dtype=bool)].mean()
    across = weights[np.ix_(a, b)].mean()
    assert within > 0.01 and abs(across) < 1e-9  # the clusters never co-occur: B is block-diagonal
    assert np.allclose(np.diag(weights), 0.0)


@pytest.mark.parametrize("n_users", [4, 30], ids=["dual_woodbury", "primal_gram"])
def test_ease_closed_form_matches_the_direct_formula(n_users: int) -> None:
    rng = np.random.default_rng(n_users)
    items = [f"i{j}" for j in range(8)]
    rows = [(f"u{u}", items[j], pd.Timestamp("2024-01-01", tz="UTC"), "view", float(rng.integers(1, 4)))
            for u in range(n_users) for j in rng.choice(8, size=4, replace=False)]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type", "weight"])
    ease = EASERecommender(l2=2.0).fit(train, pd.DataFrame({"item_id": items}), pd.DataFrame(columns=["user_id"]))
    x = ease.matrix.toarray().astype(float)
    precision = np.linalg.inv(x.T @ x + 2.0 * np.eye(8))
    expected = np.eye(8) - precision / np.diag(precision)  # B = I - P diag(1/diag P)
    np.fill_diagonal(expected, 0.0)
    assert len(ease._active) == 8
    np.testing.assert_allclose(ease._weights, expected, atol=1e-5)


def test_users_without_history_fall_back() -> None:
    popular = fitted(PopularityRecommender()).recommend(["stranger"], 4)
    assert fitted(EASERecommender(l2=100.0)).recommend(["stranger"], 4).tolist() == popular.tolist()
    # a profiled user with no history still gets the segment's list
    users = pd.concat([USERS, pd.DataFrame([("newY", "Y", "25-34")], columns=USERS.columns)])
    segment = SegmentPopularityRecommender().fit(TRAIN, CATALOG, users).recommend(["newY"], 6)
    assert set(segment[0]) == set(CLUSTERS["Y"])


def test_segment_rules() -> None:
    retail = pd.DataFrame({"user_id": ["u1", "u2"], "country": ["DE", "FR"], "age_band": ["18-24", "25-34"]})
    assert segment_rule(retail) == "country_age"
    assert assign_segments(retail, TRAIN, CATALOG).to_dict() == {"u1": "DE | 18-24", "u2": "FR | 25-34"}

    banking = pd.DataFrame({"user_id": [f"u{i}" for i in range(8)], "age": [22, 35, 45, 70, 22, 35, 45, 70],
                            "income": [10, 20, 30, 40, 50, 60, 70, 80]})
    assert segment_rule(banking) == "age_income"
    labels = assign_segments(banking, TRAIN, CATALOG)
    # 8 users, income ranks 1..8 -> quartile = ceil(rank/8 * 4): 1,1,2,2,3,3,4,4
    assert labels["u0"] == "<30 | income Q1" and labels["u3"] == "65+ | income Q2"
    assert labels["u7"] == "65+ | income Q4" and labels["u5"] == "30-39 | income Q3"

    catalog = pd.DataFrame({"item_id": ["m1", "m2", "m3"],
                            "category": ["Movies>Drama>War", "Movies>Comedy", "Movies>Drama"]})
    assert segment_level(catalog["category"]).tolist() == ["Movies>Drama", "Movies>Comedy", "Movies>Drama"]
    history = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["m1", "m3", "m2", "m2"],
                            "weight": [1.0, 1.0, 4.0, 1.0]})
    no_profiles = pd.DataFrame({"user_id": ["u1", "u2"]})
    assert segment_rule(no_profiles) == "dominant_category"
    # u1: Drama 1 + 1 = 2 < Comedy 4 ; u2: Comedy
    assert assign_segments(no_profiles, history, catalog).to_dict() == {"u1": "Movies>Comedy", "u2": "Movies>Comedy"}
