"""The ground truth: persistence, hand-checked formulas, lending rules."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.eligibility import BankingRules
from simulation.truth import GroundTruth, sigmoid


def test_truth_round_trips_through_disk(tiny_world):
    for domain in ("retail", "banking"):
        truth = tiny_world.truth(domain)
        copy_root = tiny_world.paths.root.parent / f"copy-{domain}"
        truth.save(type(tiny_world.paths)(copy_root))
        again = GroundTruth.load(type(tiny_world.paths)(copy_root), domain)
        users, items = truth.user_ids[:50, None], truth.item_ids[None, :]
        np.testing.assert_array_equal(truth.relevance(users, items), again.relevance(users, items))
        assert again.params == truth.params


def test_relevance_and_purchase_follow_the_documented_formula(tiny_world):
    truth = tiny_world.truth("retail")
    u, i = 7, 3
    p = truth.params
    logit = (p["alpha"] + float(truth.user_vec[u] @ truth.item_vec[i]) + truth.item_bias[i]
             - p["price_weight"] * truth.price_sensitivity[u] * truth.price_term[i])
    assert truth.relevance([truth.user_ids[u]], [truth.item_ids[i]])[0] == pytest.approx(sigmoid(logit), rel=1e-5)
    out = np.flatnonzero(~truth.in_stock)[0]
    assert truth.purchase_probability(truth.user_ids[:1], truth.item_ids[out:out + 1])[0] == 0.0
    with pytest.raises(ValueError):
        truth.eligible(truth.user_ids[:1], truth.item_ids[:1])


def test_purchases_make_an_item_owned(tiny_world):
    truth = tiny_world.truth("retail")
    bought = tiny_world.all_events("retail").query("event_type == 'purchase'").iloc[0]
    u, i = truth.user_index([bought.user_id])[0], truth.item_index([bought.item_id])[0]
    p = truth.params
    logit = (p["alpha"] + float(truth.user_vec[u] @ truth.item_vec[i]) + truth.item_bias[i]
             - p["price_weight"] * truth.price_sensitivity[u] * truth.price_term[i] - p["owned_penalty"])
    assert truth.relevance([bought.user_id], [bought.item_id])[0] == pytest.approx(sigmoid(logit), rel=1e-5)
    assert truth.purchase_probability([bought.user_id], [bought.item_id])[0] == 0.0


def test_banking_rules_on_a_hand_built_case():
    nan = np.nan
    rules = BankingRules.from_arrays(dict(
        age=np.array([20.0, 40.0]), income=np.array([15_000.0, 80_000.0]), credit_score=np.array([600.0, 750.0]),
        dti=np.array([0.2, 0.5]), has_arrears=np.array([False, True]),
        # products: 0 open to all, 1 = premium card (income 50k, score 700, no arrears), 2 = excluded by 0
        min_age=np.array([18.0, 21.0, 18.0]), max_age=np.array([nan, nan, 30.0]),
        min_income=np.array([nan, 50_000.0, nan]), min_credit_score=np.array([nan, 700.0, nan]),
        max_dti=np.array([nan, 0.6, nan]), requires_no_arrears=np.array([False, True, False]),
        excluded_by=np.array([[False, False, False], [False, False, False], [True, False, False]]),
    ))
    held = np.array([[False, False, False], [True, False, False]])
    users, items = np.array([[0], [1]]), np.array([[0, 1, 2]])
    expected = np.array([[True, False, True],    # young, low income: not the premium card
                         [False, False, False]])  # holds 0, arrears bar 1, too old for 2 (and 0 excludes 2)
    np.testing.assert_array_equal(rules.eligible(held, users, items), expected)
    held[0, 0] = True
    assert not rules.eligible(held, np.array([0]), np.array([2]))[0]  # now excluded by product 0


def test_approval_probability_is_zero_exactly_when_ineligible(tiny_world):
    truth = tiny_world.truth("banking")
    users, items = truth.user_ids[:, None], truth.item_ids[None, :]
    eligible = truth.eligible(users, items)
    approval = truth.approval_probability(users, items)
    assert (approval[~eligible] == 0).all() and (approval[eligible] > 0.3).all()
    assert 0.2 < eligible.mean() < 0.9
