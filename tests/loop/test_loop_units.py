"""The closed loop's pure parts on hand-made inputs with hand-computed answers (no service, no Spark)."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from common.schemas import validate_event
from experiments.ope import evaluate_policy, exploration_log
from experiments.slates import SlateReference
from loop.ab import user_totals
from loop.health import long_tail_share
from loop.ope import explored_slots, target_propensities
from loop.service import ServiceClient, write_variant
from loop.simulate import event_records, sample_sessions
from serving.settings import DiversityRules, ExplorationRules, RerankRules
from simulation.sessions import SessionPlan

RULES = RerankRules(diversity=DiversityRules(max_share=0.3), exploration=ExplorationRules(share=0.1, min_position=3))


def _event(event_id: str, user: str, kind: str, arm: str, request: str | None = "q1", **extra: object) -> dict:
    return {"event_id": event_id, "domain": "retail", "user_id": user, "item_id": extra.pop("item", "r_i1"),
            "event_type": kind, "timestamp": pd.Timestamp("2024-03-14 10:00", tz="UTC"), "request_id": request,
            "position": extra.pop("position", None), "session_id": "r_s1", "device": "web",
            "value": extra.pop("value", np.nan), "quantity": extra.pop("quantity", None), "arm": arm,
            "propensity": extra.pop("propensity", np.nan), "day": "2024-03-14"}


def test_user_totals_count_per_user_and_drop_users_seen_in_two_arms() -> None:
    events = pd.DataFrame([
        _event("e1", "r_u1", "impression", "control", position=1),
        _event("e2", "r_u1", "click", "control", position=1),
        _event("e3", "r_u1", "purchase", "control", position=1, value=30.0, quantity=2),
        _event("e4", "r_u1", "purchase", "control", position=1, value=10.0, quantity=1),
        _event("e5", "r_u2", "impression", "treatment", position=1),
        _event("e6", "r_u3", "impression", "control", position=1),
        _event("e7", "r_u3", "impression", "treatment", request="q2", position=1),
    ])
    totals = user_totals(events, "purchase").set_index("user_id")
    assert sorted(totals.index) == ["r_u1", "r_u2"]  # r_u3 saw both arms
    assert totals.loc["r_u1", "arm"] == "control"
    assert totals.loc["r_u1", ["impressions", "clicks", "orders", "revenue", "attributed_conversions"]].tolist() == [
        1.0, 1.0, 2.0, 40.0, 2.0]
    assert totals.loc["r_u2", ["impressions", "orders", "revenue"]].tolist() == [1.0, 0.0, 0.0]


def test_event_records_are_valid_contract_events() -> None:
    frame = pd.DataFrame([
        _event("e1", "r_u1", "impression", "treatment", position=4, propensity=0.25),
        _event("e2", "r_u1", "purchase", "treatment", position=4, value=12.5, quantity=3),
    ]).astype({"position": "Int32", "quantity": "Int32"})
    records = event_records(frame)
    assert "value" not in records[0] and "quantity" not in records[0] and "day" not in records[0]
    assert not {"arm", "propensity"} & (records[0].keys() | records[1].keys())  # only the service sets them
    assert records[0]["timestamp"] == "2024-03-14T10:00:00.000000Z"
    for record in records:
        event, rejection = validate_event(record)
        assert rejection is None, rejection
    assert records[1]["quantity"] == 3 and isinstance(records[1]["position"], int)


def test_sample_sessions_keeps_whole_sessions_under_the_cap() -> None:
    sessions = np.array([0, 0, 0, 1, 2, 2, 3])  # 4 sessions with 3, 1, 2, 1 requests
    plan = SessionPlan(np.arange(4), np.zeros(4), np.arange(4), np.array(["a", "b", "c", "d"]), np.zeros(4),
                       sessions, np.arange(7), np.array([f"q{i}" for i in range(7)]))
    rng = np.random.default_rng(0)
    assert sample_sessions(plan, None, rng).tolist() == list(range(7))
    chosen = sample_sessions(plan, 4, rng)
    assert len(chosen) <= 4 and np.all(np.diff(chosen) > 0)
    for session in np.unique(sessions[chosen]):  # a chosen session comes with all its requests
        assert set(np.flatnonzero(sessions == session)) <= set(chosen.tolist())


def test_candidate_propensities_follow_serving_s_exploration_formula() -> None:
    # k=10, min_position=3 -> R=7 range slots; share 0.1 -> n=1; the logged explored item had 1/7/20 (M=20)
    assert explored_slots(RULES, 0.1, 10, 20) == 1
    assert explored_slots(RULES, 0.3, 10, 20) == 3  # floor(3), R=7, cap ceil(0.3*10)=3
    assert explored_slots(RULES, 0.5, 10, 20) == 3  # capped by the diversity cap
    assert explored_slots(RULES, 0.3, 10, 2) == 2  # capped by the pool
    items = [f"r_i{i}" for i in range(10)]
    propensities = [1.0] * 3 + [6 / 7] * 2 + [1 / 7 / 20] + [6 / 7] * 4
    reasons = [[]] * 5 + [["exploration"]] + [[]] * 4
    slates = pd.DataFrame({"request_id": ["q1"], "items": [items], "propensities": [propensities],
                           "reasons": [reasons]})
    target = target_propensities(slates, RULES, 0.3).set_index("item_id")["target_propensity"]
    assert list(target.index) == items[3:]  # only the randomised range
    assert target["r_i5"] == pytest.approx(3 / 7 / 20)
    assert target["r_i3"] == pytest.approx(4 / 7)
    same = target_propensities(slates, RULES, 0.1).set_index("item_id")["target_propensity"]
    assert same.tolist() == pytest.approx(propensities[3:])  # the logging policy itself: weights 1


def test_ips_of_the_logging_policy_is_its_own_mean_reward() -> None:
    rows = []
    for r in range(200):  # explored slot clicked 1 in 4 requests, exploited slot every other one
        rows.append(_event(f"i{r}a", "r_u1", "impression", "t", request=f"q{r}", item="r_ia", position=4,
                           propensity=1 / 7))
        rows.append(_event(f"i{r}b", "r_u1", "impression", "t", request=f"q{r}", item="r_ib", position=5,
                           propensity=6 / 7))
        if r % 4 == 0:
            rows.append(_event(f"c{r}a", "r_u1", "click", "t", request=f"q{r}", item="r_ia", position=4))
        if r % 2 == 0:
            rows.append(_event(f"c{r}b", "r_u1", "click", "t", request=f"q{r}", item="r_ib", position=5))
    log = exploration_log(pd.DataFrame(rows))
    same = log[["request_id", "item_id"]].assign(target_propensity=log["propensity"])
    estimates = evaluate_policy(log, same, n_boot=200)
    assert estimates["ips"].value == pytest.approx((0.25 + 0.5) / 2)
    only_explored = log[["request_id", "item_id"]].assign(target_propensity=np.where(log["item_id"] == "r_ia", 1.0, 0.0))
    # a policy that always shows the explored item there: IPS = mean(7 * r_a) / 2 slots -> 7 * 0.25 / 2
    assert evaluate_policy(log, only_explored, n_boot=200)["ips"].value == pytest.approx(7 * 0.25 / 2)


def test_long_tail_share_counts_impressions_outside_the_popular_head() -> None:
    catalog = {f"r_i{i}": "A>B" for i in range(10)}
    reference = SlateReference.build(catalog, {"r_i0": 9, "r_i1": 5, "r_i2": 1}, 10)  # head: 20% = r_i0, r_i1
    shown = np.array(["r_i0", "r_i1", "r_i2", "r_i9", "r_unknown"])
    assert long_tail_share(shown, reference) == pytest.approx(3 / 5)


def test_a_variant_file_overrides_every_domain_s_rules(tmp_path) -> None:
    from serving.settings import load_settings

    path = write_variant(tmp_path / "off.yaml", {"exploration": {"share": 0.0}, "diversity": {"max_share": 1.0}})
    rules = load_settings(["retail", "banking"], config_path=path).rules
    for name in ("retail", "banking"):
        assert rules[name].exploration.share == 0.0 and rules[name].diversity.max_share == 1.0
    assert rules["retail"].exploration.min_position == 3 and rules["banking"].filters.eligibility is True


def test_a_shed_request_is_sent_again_after_its_retry_after() -> None:
    """503 + Retry-After (shed: over capacity, or a budget spent waiting while a release loads) is retried;
    a 503 without it (nothing to serve) is an error at once."""
    answers = iter([httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "over capacity"}),
                    httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "over capacity"}),
                    httpx.Response(200, json={"request_id": "q1", "items": [], "arm": "control", "release": "v1",
                                              "path": "full"})])
    client = ServiceClient("http://service", None, transport=httpx.MockTransport(lambda request: next(answers)))
    assert client.recommend("r_u1", "retail", 8, "web", "s1").request_id == "q1"
    assert client.retried == 2
    down = ServiceClient("http://service", None, transport=httpx.MockTransport(
        lambda request: httpx.Response(503, json={"error": "no release is loaded"})))
    with pytest.raises(httpx.HTTPStatusError):
        down.recommend("r_u1", "retail", 8, "web", "s1")
    assert down.retried == 0
