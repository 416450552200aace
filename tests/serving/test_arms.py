"""Experiment arms in serving: assignment, the legacy segment arm, per-arm overrides, simulated time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.online_features import OnlineFeatures
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from common.schemas import validate_event
from serving.api_models import Context
from serving.app import _served_at, create_app
from serving.arms import FULL_PIPELINE, LEGACY_SEGMENT, ArmResolver, arm_rules
from serving.catalog import CatalogIndex
from serving.eligibility import UserContext
from serving.reranking import Candidates, rerank
from serving.settings import Budgets, ServingSettings, load_settings

USERS = [f"r_u{i:02d}" for i in range(24)]
OUT_OF_STOCK = "r_i07"  # see conftest: out of stock in the real-time item_stats view only
SIM_TIME = "2024-03-14T09:30:00Z"
EXPERIMENTS = {"experiments": {"retail": {
    "name": "serving-arms-test", "salt": "serving-arms-test-salt", "control": "legacy",
    "arms": [
        {"name": "legacy", "share": 0.34, "variant": LEGACY_SEGMENT},
        {"name": "plain", "share": 0.33, "variant": FULL_PIPELINE,
         "rerank_overrides": {"exploration": {"share": 0.0}, "diversity": {"max_share": 1.0}}},
        {"name": "explore", "share": 0.33, "variant": FULL_PIPELINE,
         "rerank_overrides": {"exploration": {"share": 0.5, "min_position": 0}}},
    ]}}}


@pytest.fixture(scope="module")
def experiments_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """RECSYS_EXPERIMENTS_FILE -> a three-arm retail experiment for the module."""
    path = tmp_path_factory.mktemp("experiments") / "experiments.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENTS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_EXPERIMENTS_FILE", str(path))
        yield path


@pytest.fixture(scope="module")
def settings(experiments_file: Path, tmp_path_factory: pytest.TempPathFactory) -> ServingSettings:
    root = tmp_path_factory.mktemp("arms")
    budgets = Budgets(total=5000, user_features=1000, retrieval=2000, item_features=1000, ranking=1000)
    return load_settings(domains=["retail"], api_key="test-key-0123456789").model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts", "budgets_ms": budgets,
        "trust_context_timestamp": True})


@pytest.fixture(scope="module")
def by_arm(settings: ServingSettings) -> dict[str, list[str]]:
    resolver = ArmResolver(settings)
    out: dict[str, list[str]] = {}
    for user in USERS:
        out.setdefault(resolver.arm("retail", user).name, []).append(user)
    return out


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


@pytest.fixture(scope="module")
def served(settings: ServingSettings, publish: Callable[..., str],
           store: OnlineFeatures) -> Iterator[tuple[TestClient, FastAPI]]:
    publish(ArtifactRegistry(settings.artifacts_root), "v1")
    app = create_app(settings, features=store)
    with TestClient(app) as client:
        yield client, app


def _recommend(client: TestClient, user: str, k: int, **extra: object) -> dict:
    response = client.post("/v1/recommendations", json={"user_id": user, "domain": "retail", "k": k, **extra})
    assert response.status_code == 200, response.text
    return response.json()


# ---- assignment and rules (no release needed) ----------------------------------------------------


def test_assignment_is_deterministic_and_covers_every_arm(settings: ServingSettings,
                                                          by_arm: dict[str, list[str]]) -> None:
    again = ArmResolver(settings)  # a second replica agrees on every user
    assert all(again.arm("retail", u).name == arm for arm, users in by_arm.items() for u in users)
    assert set(by_arm) == {"legacy", "plain", "explore"}
    variants = {a.name: a.variant for a in (again.arm("retail", u) for u in USERS)}
    assert variants == {"legacy": LEGACY_SEGMENT, "plain": FULL_PIPELINE, "explore": FULL_PIPELINE}


def test_overrides_apply_per_arm(settings: ServingSettings) -> None:
    resolver, base = ArmResolver(settings), settings.rules["retail"]
    arms = {a.name: a for a in (resolver.arm("retail", u) for u in USERS)}
    assert arms["plain"].rules.exploration.share == 0.0 and arms["plain"].rules.diversity.max_share == 1.0
    assert arms["plain"].rules.boost == base.boost and arms["plain"].rules.filters == base.filters
    assert arms["explore"].rules.exploration.share == 0.5 and arms["explore"].rules.exploration.min_position == 0
    assert arms["explore"].rules.diversity == base.diversity
    legacy = arms["legacy"].rules
    assert legacy.filters == base.filters  # hard filters stay
    assert legacy.exploration.share == 0.0 and legacy.diversity.max_share == 1.0
    assert legacy.boost.margin_lift == legacy.boost.new_lift == legacy.boost.max_rank_lift == 0


def test_bad_arms_are_refused(settings: ServingSettings) -> None:
    base = settings.rules["retail"]
    with pytest.raises(ValueError, match="hard filters"):
        arm_rules(base, FULL_PIPELINE, {"filters": {"out_of_stock": False}})
    with pytest.raises(ValueError, match="unknown pipeline variant"):
        arm_rules(base, "bandit", {})


def test_no_experiment_serves_the_default_arm(settings: ServingSettings, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "none.yaml"
    empty.write_text("experiments: {}\n")
    monkeypatch.setenv("RECSYS_EXPERIMENTS_FILE", str(empty))
    arm = ArmResolver(settings).arm("retail", "r_u01")
    assert (arm.name, arm.variant, arm.rules) == ("control", FULL_PIPELINE, settings.rules["retail"])


def test_legacy_rules_never_offer_an_ineligible_product(banking_catalog: CatalogIndex, now: datetime) -> None:
    """Banking under legacy rules: popularity order kept, eligibility and holdings still filter."""
    base = load_settings(domains=["banking"]).rules["banking"]
    rules = arm_rules(base, LEGACY_SEGMENT, {})
    rows = np.arange(len(banking_catalog))  # popularity order: card_basic, card_gold, loan, savings, student
    candidates = Candidates(rows, np.linspace(1.0, 0.5, len(rows)), tuple({"popular": 1.0} for _ in rows))
    user = UserContext("b_u1", age=30, income=30_000.0, credit_score=None, dti=0.2, has_arrears=False,
                       products_held=frozenset({"b_savings"}))
    slate = rerank(candidates, banking_catalog, user, rules, 2, in_stock=np.ones(len(rows), dtype=bool),
                   backfill_rows=rows, now_ts=now.timestamp(), rng=np.random.default_rng(0))
    # card_gold needs income 60k and a known credit score; savings is held; student is for under 25s
    assert [i.item_id for i in slate.items] == ["b_card_basic", "b_loan"]
    assert all(i.propensity == 1.0 and i.reasons == () for i in slate.items)
    assert slate.removed["eligibility:min_income"] == 1 and slate.removed["eligibility:already_held"] == 1


# ---- the running app -------------------------------------------------------------------------------


def test_legacy_arm_serves_the_segment_top_items_hard_filtered(served, by_arm, store: OnlineFeatures) -> None:
    client, app = served
    release = app.state.services.releases.get("retail")
    in_stock = dict(zip(release.catalog.item_ids, release.items.in_stock(), strict=True))
    assert not in_stock[OUT_OF_STOCK]
    k, seen_out_of_stock = 10, False
    for user in by_arm["legacy"]:
        values = store.user_features(user).values
        bought = {i for i, n in zip(values["hist_item_ids"], values["hist_item_purchases"], strict=True) if n > 0}
        popular = list(release.retrievers.popular(str(values["country"]), 200)[0])
        excluded = popular[0]
        expected = [i for i in popular if in_stock.get(i) and i not in bought and i != excluded][:k]
        seen_out_of_stock |= OUT_OF_STOCK in popular[: popular.index(expected[-1])]
        body = _recommend(client, user, k, exclude=[excluded])
        ids = [i["item_id"] for i in body["items"]]
        assert (body["arm"], body["path"]) == ("legacy", LEGACY_SEGMENT)
        assert ids == expected and len(ids) == k
        assert all(i["propensity"] == 1.0 and "exploration" not in i["reasons"] for i in body["items"])
    assert seen_out_of_stock  # the out-of-stock item was among some segment's top items and was dropped


def test_full_pipeline_arms_apply_their_overrides(served, by_arm) -> None:
    client, _ = served
    explored = 0
    for arm in ("plain", "explore"):
        for user in by_arm[arm]:
            body = _recommend(client, user, 6)
            assert body["arm"] == arm and body["path"] != LEGACY_SEGMENT
            ids = [i["item_id"] for i in body["items"]]
            assert len(ids) == 6 == len(set(ids)) and OUT_OF_STOCK not in ids
            reasons = [r for i in body["items"] for r in i["reasons"]]
            if arm == "plain":
                assert "exploration" not in reasons and "diversity" not in reasons
                assert all(i["propensity"] == 1.0 for i in body["items"])
            explored += arm == "explore" and "exploration" in reasons
    assert explored > 0  # exploration on from slot 0 in this arm only


def test_impressions_carry_the_arm_and_the_simulated_time(served, by_arm, settings: ServingSettings) -> None:
    client, app = served
    user = by_arm["plain"][0]
    body = _recommend(client, user, 4, context={"timestamp": SIM_TIME, "session_id": "s9"})
    assert app.state.services.impressions.flush(timeout=10)  # impressions are written by the writer thread
    lines = [orjson.loads(line) for f in DataPaths(settings.data_root).incoming("retail").glob("*.jsonl")
             for line in f.read_bytes().splitlines()]
    impressions = [e for e in lines if e.get("request_id") == body["request_id"]]
    assert len(impressions) == 4
    assert {(e["arm"], e["timestamp"][:19], e["session_id"]) for e in impressions} == {
        ("plain", "2024-03-14T09:30:00", "s9")}
    assert all(validate_event(e)[1] is None for e in impressions)


def test_context_timestamp_is_ignored_unless_trusted(settings: ServingSettings) -> None:
    stamp = Context(timestamp="2024-03-14T10:30:00+01:00").timestamp
    assert stamp == datetime(2024, 3, 14, 9, 30, tzinfo=UTC)
    assert Context(timestamp="2024-03-14T09:30:00").timestamp == stamp  # no offset: UTC
    assert _served_at(settings, stamp) == stamp
    assert _served_at(settings, None) > stamp
    assert _served_at(settings.model_copy(update={"trust_context_timestamp": False}), stamp) > stamp


class _DownStore:
    """Fault injection: an online store whose every read fails."""

    def user_features(self, user_id: str) -> object:
        raise ConnectionError("online store down")

    def item_features(self, item_ids: object) -> object:
        raise ConnectionError("online store down")


def test_a_legacy_slate_without_the_users_features_says_it_is_degraded(served, by_arm,
                                                                         settings: ServingSettings) -> None:
    _, app = served  # v1 published
    with TestClient(create_app(settings, features=_DownStore())) as client:
        legacy = _recommend(client, by_arm["legacy"][0], 5)
        plain = _recommend(client, by_arm["plain"][0], 5)
    assert (legacy["path"], legacy["degraded"]) == (LEGACY_SEGMENT, True) and len(legacy["items"]) == 5
    assert plain["degraded"] is True
    client, _ = served
    assert _recommend(client, by_arm["legacy"][0], 5)["degraded"] is False  # the same user, the store up


def test_the_shipped_attribution_experiment_switches_only_the_boosts_off() -> None:
    """config/experiments-attribution.yaml: control, treatment and a no-boost arm that differs from the
    treatment by the margin and newness lifts alone (issue 17's attribution of the lift)."""
    from common.paths import REPO_ROOT
    from experiments.assignment import load_experiments

    experiments = load_experiments(REPO_ROOT / "config" / "experiments-attribution.yaml")
    base = load_settings(domains=["retail", "banking"]).rules
    for domain in ("retail", "banking"):
        experiment = experiments[domain]
        assert experiment.control == "control" and set(experiment.arms) == {"control", "treatment", "no_boost"}
        rules = {name: arm_rules(base[domain], spec.variant, spec.rerank_overrides)
                 for name, spec in experiment.arms.items()}
        assert rules["treatment"] == base[domain] and base[domain].boost.margin_lift > 0
        assert rules["no_boost"].boost.margin_lift == 0 and rules["no_boost"].boost.new_lift == 0
        assert rules["no_boost"].model_copy(update={"boost": rules["treatment"].boost}) == rules["treatment"]
        assert experiment.arms["no_boost"].variant == FULL_PIPELINE
