"""The legacy logging policy: Plackett-Luce slates from segment popularity, plus uniform exploration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulation.policy import LoggingPolicy, PolicyConfig, _plackett_luce, by_score_keeping_explored


def test_plackett_luce_matches_hand_computed_slot_probabilities():
    prob = np.array([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    n = 60_000
    out = _plackett_luce(prob, np.zeros(n, dtype=np.int64), 3, np.random.default_rng(0))
    assert (out[:, 0] != out[:, 1]).all() and (out[:, 1] != out[:, 2]).all() and (out[:, 0] != out[:, 2]).all()
    p = prob[0]
    second = [sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)]
    # second slot: 0.3288, 0.3687, 0.2222, 0.0803 (by hand from the formula above)
    np.testing.assert_allclose(np.bincount(out[:, 0], minlength=4) / n, p, atol=0.01)
    np.testing.assert_allclose(np.bincount(out[:, 1], minlength=4) / n, second, atol=0.01)


def test_slates_use_available_items_and_explore_at_the_configured_rate(tiny_world):
    truth = tiny_world.truth("retail")
    start_us = int(truth.launched_us.min())
    policy = LoggingPolicy(truth, start_us + 10**12, PolicyConfig(explore_rate=0.2))
    available = np.zeros(len(truth.item_ids), dtype=bool)
    available[:150] = True
    segments = np.repeat(np.arange(len(truth.segment_names)), 100)
    batch = policy.slates(segments, available, 10, np.random.default_rng(0))
    assert batch.items.shape == (len(segments), 10)
    assert available[batch.items].all()
    assert all(len(set(row)) == 10 for row in batch.items)
    assert 0.17 < batch.explored.mean() < 0.21  # a few explore draws are dropped as duplicates
    popular = batch.items[~batch.explored]
    counts = np.bincount(popular.ravel(), minlength=len(truth.item_ids))[:150]
    assert np.sort(counts)[-15:].sum() > 0.25 * counts.sum()  # concentrated on the popular head


def test_by_score_keeps_explored_slots_and_orders_the_rest_best_first():
    columns = np.array([[10, 11, 12, 13], [20, 21, 22, 23]])
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.3, 0.3, 0.8, 0.1]])
    explored = np.array([[False, True, False, False], [False, False, False, False]])
    out = by_score_keeping_explored(columns, scores, explored)
    np.testing.assert_array_equal(out[0], [13, 11, 12, 10])  # 11 stays in slot 2; 13 (0.7) > 12 (0.5) > 10 (0.1)
    np.testing.assert_array_equal(out[1], [22, 20, 21, 23])  # ties keep the sampling order


def test_slates_are_ordered_by_the_policys_score_and_sampled_order_is_not(tiny_world):
    truth = tiny_world.truth("retail")
    start_us = int(truth.launched_us.min())
    available = np.ones(len(truth.item_ids), dtype=bool)
    segments = np.repeat(np.arange(len(truth.segment_names)), 200)
    share_by_slot = {}
    for order in ("score", "sampled"):
        policy = LoggingPolicy(truth, start_us + 10**12, PolicyConfig(explore_rate=0.0, order=order))
        batch = policy.slates(segments, available, 10, np.random.default_rng(0))
        share_by_slot[order] = batch.popularity_share.mean(axis=0)
        if order == "score":
            assert (np.diff(batch.popularity_share, axis=1) <= 0).all()  # every slate best first
    steepness = {order: shares[0] / shares[-1] for order, shares in share_by_slot.items()}
    assert steepness["score"] > 2 * steepness["sampled"], steepness  # the draw order is far flatter


def test_the_worlds_own_log_confounds_position_with_relevance(tiny_world):
    """In the generated log the slots examined most hold the items that are more often relevant: the
    confounding the ranker's position tower is there to remove."""
    for domain in ("retail", "banking"):
        truth = tiny_world.truth(domain)
        shown = tiny_world.all_events(domain).query("event_type == 'impression'")
        shown = shown[~shown["request_id"].str.startswith("organic")] if "request_id" in shown else shown
        relevance = truth.relevance(shown["user_id"].to_numpy(), shown["item_id"].to_numpy())
        by_position = pd.Series(relevance).groupby(shown["position"].to_numpy()).mean()
        assert by_position.iloc[0] > by_position.iloc[-1], (domain, by_position.round(4).tolist())
        rho = np.corrcoef(shown["position"].rank(), pd.Series(relevance).rank())[0, 1]
        assert rho < -0.1, (domain, rho)  # -0.20 retail, -0.23 banking; the draw order: -0.008, -0.026
