"""The promotion gate on hand-computed cases."""

from __future__ import annotations

import pytest

from orchestration.gate import GatePolicy, MetricRule, decide

POLICY = GatePolicy.from_mapping({
    "recall@100": {"tolerance": 0.05},
    "auc": {"tolerance": 0.02, "minimum": 0.5},
    "logloss": {"higher_is_better": False, "tolerance": 0.10, "minimum": 0.7},
})
LIVE = {"recall@100": 0.40, "auc": 0.70, "logloss": 0.50}
ORDERS = {"collaborative_ndcg@10": 0.05, "content_ndcg@10": 0.08, "popularity_ndcg@10": 0.04,
          "best_retriever_ndcg@10": 0.08, "ranked_ndcg@10": 0.09}  # the ranked order beats its retrievers


def _decide(candidate: dict, live: dict | None = LIVE, problems: tuple[str, ...] = ()) -> tuple[bool, list[str]]:
    decision = decide({**ORDERS, **candidate}, live, problems, POLICY)
    return decision.promote, [c.metric for c in decision.comparisons if not c.ok]


def test_within_tolerance_is_promoted() -> None:
    # recall may fall to 0.40 - 5% * 0.40 = 0.38; auc to 0.70 - 2% * 0.70 = 0.686; logloss rise to 0.55
    assert _decide({"recall@100": 0.38, "auc": 0.686, "logloss": 0.55}) == (True, [])
    assert _decide({"recall@100": 0.45, "auc": 0.75, "logloss": 0.40}) == (True, [])


@pytest.mark.parametrize(
    ("candidate", "failing"),
    [
        ({"recall@100": 0.379, "auc": 0.70, "logloss": 0.50}, ["recall@100"]),
        ({"recall@100": 0.40, "auc": 0.685, "logloss": 0.50}, ["auc"]),
        ({"recall@100": 0.40, "auc": 0.70, "logloss": 0.551}, ["logloss"]),
        ({"recall@100": 0.10, "auc": 0.60, "logloss": 0.90}, ["recall@100", "auc", "logloss"]),
    ],
)
def test_a_regression_beyond_tolerance_is_refused(candidate: dict, failing: list[str]) -> None:
    assert _decide(candidate) == (False, failing)


def test_missing_or_non_finite_candidate_metrics_are_refused() -> None:
    decision = decide({"recall@100": float("nan"), "auc": 0.7, **ORDERS}, LIVE, (), POLICY)
    assert not decision.promote
    assert [c.metric for c in decision.comparisons if not c.ok] == ["recall@100", "logloss"]
    assert "not evaluated" in decision.summary() and "not a finite number" in decision.summary()


def test_first_release_is_judged_by_the_absolute_bounds_only() -> None:
    assert _decide({"recall@100": 0.01, "auc": 0.51, "logloss": 0.69}, live=None) == (True, [])
    promote, failing = _decide({"recall@100": 0.01, "auc": 0.49, "logloss": 0.71}, live=None)
    assert not promote and failing == ["auc", "logloss"]


def test_the_absolute_bound_applies_even_when_the_live_release_is_worse() -> None:
    assert _decide({"recall@100": 0.40, "auc": 0.45, "logloss": 0.50}, live={**LIVE, "auc": 0.44}) == (False, ["auc"])


def test_metrics_the_live_release_lacks_are_not_compared() -> None:
    decision = decide({"recall@100": 0.02, "auc": 0.7, "logloss": 0.5, **ORDERS}, {"auc": 0.7}, (), POLICY)
    assert decision.promote
    recall = decision.comparisons[0]
    assert recall.live is None and recall.allowed is None and recall.ok


def test_verification_problems_refuse_whatever_the_metrics() -> None:
    decision = decide({"recall@100": 0.9, "auc": 0.9, "logloss": 0.1, **ORDERS}, LIVE, ("checksum mismatch: x",),
                      POLICY)
    assert not decision.promote
    assert decision.reasons == ("verification failed: checksum mismatch: x",)


def test_a_tolerance_outside_zero_to_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        MetricRule("auc", tolerance=1.5)


def test_a_ranked_order_below_its_best_retriever_is_refused_whatever_the_live_release() -> None:
    candidate = {"recall@100": 0.45, "auc": 0.75, "logloss": 0.40, "collaborative_ndcg@10": 0.041,
                 "content_ndcg@10": 0.093, "popularity_ndcg@10": 0.05, "best_retriever_ndcg@10": 0.093,
                 "ranked_ndcg@10": 0.036}
    for live in (LIVE, None):
        decision = decide(candidate, live, (), POLICY)
        assert not decision.promote
        assert decision.reasons == (
            "ranked_ndcg@10: the ranked order (NDCG@10 0.036) scores below its best retriever content (0.093)",)
    # the evaluation's own name for the best retriever wins over the inference from the figures
    named = decide({**candidate, "best_retriever": "popularity"}, LIVE, (), POLICY)
    assert "its best retriever popularity (0.093)" in named.reasons[0]


def test_the_ranked_order_may_tie_its_best_retriever_or_trail_it_within_the_tolerance() -> None:
    good = {"recall@100": 0.45, "auc": 0.75, "logloss": 0.40}
    assert decide({**good, **ORDERS, "ranked_ndcg@10": 0.08}, None, (), POLICY).promote  # a tie passes
    behind = {**good, **ORDERS, "ranked_ndcg@10": 0.076}  # 5% below 0.08
    assert not decide(behind, None, (), POLICY).promote
    lenient = GatePolicy.from_mapping({"recall@100": {"tolerance": 0.05}, "ranked_vs_best_retriever": {"tolerance": 0.05}})
    assert lenient.ranked_tolerance == 0.05 and [r.name for r in lenient.rules] == ["recall@100"]
    assert decide(behind, None, (), lenient).promote
    refused = decide({**behind, "ranked_ndcg@10": 0.07}, None, (), lenient)
    assert refused.reasons == ("ranked_ndcg@10: the ranked order (NDCG@10 0.070) scores below its best retriever "
                               "content (0.080) by more than 5%",)
    switched_off = GatePolicy.from_mapping({"ranked_vs_best_retriever": {"tolerance": 1.0}})
    assert decide({**behind, "ranked_ndcg@10": 0.0}, None, (), switched_off).promote


def test_a_release_whose_ranked_order_was_not_evaluated_is_refused() -> None:
    decision = decide({"recall@100": 0.45, "auc": 0.75, "logloss": 0.40}, LIVE, (), POLICY)
    assert not decision.promote
    assert decision.reasons == ("ranked_ndcg@10: the ranked order was not compared with its retrievers "
                                "(ranked_ndcg@10, best_retriever_ndcg@10 not evaluated)",)
    with pytest.raises(ValueError, match="ranked_vs_best_retriever"):
        GatePolicy.from_mapping({"ranked_vs_best_retriever": {"tolerance": 1.5}})
    with pytest.raises(ValueError, match=r"\(tolerance, min_users\)"):
        GatePolicy.from_mapping({"ranked_vs_best_retriever": {"minimum": 0.1}})


def test_orders_judged_on_too_few_held_out_users_are_not_compared_and_the_decision_says_so() -> None:
    good = {"recall@100": 0.45, "auc": 0.75, "logloss": 0.40, **ORDERS, "ranked_ndcg@10": 0.0}
    thin = decide({**good, "order_eval_users": 3}, None, (), POLICY)  # a sparse business: 3 users on day D
    assert thin.promote
    (ranked,) = [c for c in thin.comparisons if c.metric == "ranked_ndcg@10"]
    assert ranked.note.startswith("NOT JUDGED: only 3 held-out user(s), fewer than 30")
    assert not decide({**good, "order_eval_users": 30}, None, (), POLICY).promote  # enough users: refused
    strict = GatePolicy.from_mapping({"ranked_vs_best_retriever": {"tolerance": 0.0, "min_users": 1}})
    assert strict.ranked_min_users == 1 and not decide({**good, "order_eval_users": 3}, None, (), strict).promote
