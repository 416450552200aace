"""Off-policy evaluation: IPS / SNIPS on a hand-made log and on a simulated uniform-exploration log."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from experiments.ope import effective_sample_size, estimate, evaluate_policy, exploration_log


def test_ips_and_snips_on_a_hand_made_log() -> None:
    rewards = np.array([1, 0, 1, 0.0])
    logged = np.array([0.5, 0.5, 0.25, 0.25])
    target = np.array([1.0, 0.0, 0.5, 0.5])  # weights 2, 0, 2, 2
    result = estimate(rewards, logged, target, clusters=np.array(["r1", "r1", "r2", "r2"]), n_boot=500)
    assert result["ips"].value == pytest.approx((2 + 0 + 2 + 0) / 4)
    assert result["snips"].value == pytest.approx(4 / 6)
    assert result["ips"].effective_sample_size == pytest.approx(36 / 12)
    assert result["ips"].logged_reward == 0.5
    # two requests (sum wr, sum w, slots): r1 (2, 2, 2), r2 (2, 4, 2); a resample holds r1 twice
    # (IPS 1, SNIPS 1), r2 twice (1, 0.5) or both (1, 2/3)
    assert result["ips"].ci == pytest.approx((1.0, 1.0))
    assert result["snips"].ci[0] == pytest.approx(0.5) and result["snips"].ci[1] == pytest.approx(1.0)


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.ones(10)) == 10
    assert effective_sample_size(np.array([4.0, 0, 0, 0])) == 1
    assert effective_sample_size(np.zeros(3)) == 0


def test_estimates_recover_the_value_of_a_policy_never_run() -> None:
    """Uniform logging over 4 items with click rates .1 .2 .3 .5; two candidate policies."""
    rng = np.random.default_rng(0)
    n, means = 20_000, np.array([0.1, 0.2, 0.3, 0.5])
    shown = rng.integers(0, 4, n)
    rewards = (rng.random(n) < means[shown]).astype(float)
    logged = np.full(n, 0.25)
    greedy = (shown == 3).astype(float)  # always the best item: true value 0.5
    mixture = np.array([0.1, 0.2, 0.3, 0.4])[shown]  # true value .01 + .04 + .09 + .2 = 0.34
    for target, truth in ((greedy, 0.5), (mixture, 0.34)):
        result = estimate(rewards, logged, target, n_boot=400, seed=1)
        for name in ("ips", "snips"):
            low, high = result[name].ci
            assert low < truth < high, (name, truth, result[name])
            assert result[name].value == pytest.approx(truth, abs=0.03)
    assert estimate(rewards, logged, greedy, n_boot=100)["ips"].effective_sample_size == pytest.approx(n / 4, rel=0.05)


def test_invalid_propensities_are_refused() -> None:
    with pytest.raises(ValueError, match="propensities"):
        estimate(np.ones(2), np.array([0.0, 0.5]), np.ones(2))
    with pytest.raises(ValueError, match="propensities"):
        estimate(np.ones(2), np.array([0.5, 0.5]), np.array([1.5, 0.0]))


def _events() -> pd.DataFrame:
    t = datetime(2025, 3, 10, tzinfo=UTC)

    def ev(kind: str, request: str, item: str, propensity: float | None = None) -> dict[str, object]:
        return {"event_type": kind, "request_id": request, "item_id": item, "position": 1, "user_id": "r_u1",
                "arm": "treatment", "propensity": propensity, "timestamp": t}

    return pd.DataFrame([
        ev("impression", "q1", "r_i1", 1.0),  # deterministic slot: not an exploration slot
        ev("impression", "q1", "r_i2", 0.5),
        ev("impression", "q1", "r_i3", 0.25),
        ev("impression", "q2", "r_i2", 0.5),
        ev("click", "q1", "r_i2"),
        ev("click", "q1", "r_i1"),
        ev("purchase", "q2", "r_i2"),
    ])


def test_exploration_log_keeps_randomised_slots_with_their_reward() -> None:
    log = exploration_log(_events(), reward="click")
    assert list(zip(log["request_id"], log["item_id"], log["reward"], strict=True)) == [
        ("q1", "r_i2", 1.0), ("q1", "r_i3", 0.0), ("q2", "r_i2", 0.0)]
    conversions = exploration_log(_events(), reward="conversion")
    assert conversions["reward"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="reward"):
        exploration_log(_events(), reward="revenue")


def test_evaluate_policy_joins_the_candidate_probabilities() -> None:
    log = exploration_log(_events(), reward="click")
    target = pd.DataFrame({"request_id": ["q1", "q2"], "item_id": ["r_i2", "r_i2"], "target_propensity": [1.0, 0.5]})
    result = evaluate_policy(log, target, n_boot=200)
    # weights: q1/r_i2 1/0.5 = 2, q1/r_i3 unlisted -> 0, q2/r_i2 0.5/0.5 = 1; rewards 1, 0, 0
    assert result["ips"].value == pytest.approx(2 / 3)
    assert result["snips"].value == pytest.approx(2 / 3)
    assert result["ips"].slots == 3
