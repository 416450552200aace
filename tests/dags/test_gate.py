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


def _decide(candidate: dict, live: dict | None = LIVE, problems: tuple[str, ...] = ()) -> tuple[bool, list[str]]:
    decision = decide(candidate, live, problems, POLICY)
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
    decision = decide({"recall@100": float("nan"), "auc": 0.7}, LIVE, (), POLICY)
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
    decision = decide({"recall@100": 0.02, "auc": 0.7, "logloss": 0.5}, {"auc": 0.7}, (), POLICY)
    assert decision.promote
    recall = decision.comparisons[0]
    assert recall.live is None and recall.allowed is None and recall.ok


def test_verification_problems_refuse_whatever_the_metrics() -> None:
    decision = decide({"recall@100": 0.9, "auc": 0.9, "logloss": 0.1}, LIVE, ("checksum mismatch: x",), POLICY)
    assert not decision.promote
    assert decision.reasons == ("verification failed: checksum mismatch: x",)


def test_a_tolerance_outside_zero_to_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        MetricRule("auc", tolerance=1.5)
