"""The legacy logging policy: Plackett-Luce slates from segment popularity, plus uniform exploration."""

from __future__ import annotations

import numpy as np

from simulation.policy import LoggingPolicy, PolicyConfig, _plackett_luce


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
