"""Serving without a release: the lake popularity fallback, its hard filters, and the swap to a release."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from common.lake import write_catalog, write_events, write_users
from common.online_features import OnlineFeatures
from common.paths import DataPaths
from common.polling import wait_until
from common.registry import ArtifactRegistry
from serving.app import create_app
from serving.fallback import FallbackManager, lake_popularity
from serving.metrics import ServingMetrics
from serving.pipeline import LAKE_POPULARITY, Pipeline, Request
from serving.releases import ReleaseManager
from serving.settings import Budgets, FallbackSettings, ServingSettings, load_settings

KEY = "test-key-0123456789"
BUDGETS = Budgets(total=5000, user_features=1000, retrieval=2000, item_features=1000, ranking=1000)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
LAKE_OUT_OF_STOCK = "r_i48"  # only in the lake catalog, with inventory 0 (the online store does not know it)
STORE_OUT_OF_STOCK = "r_i07"  # out of stock in the online store's real-time item_stats (see conftest)
BUYER = "r_u90"  # bought PURCHASED (lake events only: the online store does not know this user)
PURCHASED = "r_i02"
# purchases of the last days, most popular first; none has a margin or newness boost
RECENT = {LAKE_OUT_OF_STOCK: 10, STORE_OUT_OF_STOCK: 9, PURCHASED: 8, "r_i03": 7, "r_i04": 6, "r_i06": 5,
          "r_i08": 4, "r_i09": 3, "r_i11": 2}
EXPECTED_SLATE = ["r_i03", "r_i04", "r_i06", "r_i08", "r_i09", "r_i11"]  # RECENT without the filtered items


def _events(rows: list[tuple[str, str, str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"event_id": uuid.uuid4().hex, "domain": "banking" if item.startswith("b_") else "retail", "user_id": user,
         "item_id": item, "event_type": kind, "timestamp": ts}
        for user, item, kind, ts in rows
    ])


def _retail_lake(paths: DataPaths, catalog: pd.DataFrame) -> None:
    """The world's catalog plus an item with no inventory, and a month of events, plus an older burst."""
    sold_out = catalog.iloc[[0]].assign(item_id=LAKE_OUT_OF_STOCK, inventory=0)
    write_catalog(pd.concat([catalog, sold_out], ignore_index=True), paths, "retail")
    yesterday = NOW - timedelta(days=1)
    rows = [(f"r_x{n:03d}", item, "purchase", yesterday) for item, count in RECENT.items() for n in range(count)]
    rows[[r[1] for r in rows].index(PURCHASED)] = (BUYER, PURCHASED, "purchase", yesterday)
    rows += [("r_x001", "r_i30", "impression", yesterday)] * 100  # not a positive event
    rows += [("r_x002", "r_i40", "purchase", NOW - timedelta(days=90))] * 50  # outside the 30-day window
    write_events(_events(rows), paths)


def _settings(root: Path, domains: list[str], **fallback: float) -> ServingSettings:
    return load_settings(domains=domains, api_key=KEY).model_copy(update={
        "data_root": root / "data", "artifacts_root": root / "artifacts", "budgets_ms": BUDGETS,
        "release_poll_seconds": 0.05, "fallback": FallbackSettings(**fallback)})


def _wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    wait_until(condition, timeout)


def _recommend(client: TestClient, user: str = BUYER, domain: str = "retail", k: int = 6) -> dict:
    response = client.post("/v1/recommendations", json={"user_id": user, "domain": domain, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def test_lake_popularity_reads_the_recent_window(world, tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    _retail_lake(paths, world.catalog)
    table = lake_popularity(paths, "retail", FallbackSettings())
    ids, scores = table.top(None, 100)
    assert ids == list(RECENT)  # purchases of one day: the counts' order; r_i40 (90 days old), r_i30 (impressions) out
    assert np.all(np.diff(scores) < 0)


def test_lake_popularity_window_ends_at_the_newest_positive_day(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    last = NOW - timedelta(days=200)
    write_events(_events([("r_x1", "r_i05", "view", last), ("r_x2", "r_i05", "view", last),
                          ("r_x1", "r_i08", "view", last - timedelta(days=7)),  # one half-life before: 0.5
                          ("r_x1", "r_i06", "purchase", last - timedelta(days=40)),  # outside the window
                          ("r_x1", "r_i09", "impression", NOW)]), paths)  # the newest day: impressions only
    table = lake_popularity(paths, "retail", FallbackSettings())
    ids, scores = table.top(None, 10)
    assert ids == ["r_i05", "r_i08"] and scores.tolist() == [2.0, 0.5]
    assert table.as_of == pd.Timestamp(last)
    assert lake_popularity(DataPaths(tmp_path / "empty"), "retail", FallbackSettings()) is None


def test_serves_the_lake_fallback_without_a_release_then_swaps_in_the_release(
    world, store: OnlineFeatures, publish: Callable[..., str], tmp_path: Path, metric_delta: type
) -> None:
    settings = _settings(tmp_path, ["retail"], refresh_seconds=0.2)
    paths = DataPaths(settings.data_root)
    _retail_lake(paths, world.catalog)
    app = create_app(settings, features=store)
    delta = metric_delta(app.state.services.metrics)
    catalog_ids = {*world.catalog["item_id"], LAKE_OUT_OF_STOCK}
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "releases": {}, "missing": [], "degraded": ["retail"]}

        body = _recommend(client)
        assert (body["path"], body["degraded"]) == (LAKE_POPULARITY, True)
        assert body["release"].startswith("lake-popularity@2024-05-31")
        ids = [item["item_id"] for item in body["items"]]
        # out of stock (lake catalog and real-time stock) and already bought: never shown
        assert ids == EXPECTED_SLATE and set(ids) <= catalog_ids
        assert all(set(item["retrievers"]) == {"popular"} for item in body["items"])
        other = [item["item_id"] for item in _recommend(client, user="r_u91", k=8)["items"]]
        assert PURCHASED in other and not {LAKE_OUT_OF_STOCK, STORE_OUT_OF_STOCK} & set(other)
        assert delta("recsys_fallback_answers_total", domain="retail") == 2
        assert delta("recsys_serving_path_total", domain="retail", path=LAKE_POPULARITY) == 2
        assert delta("recsys_filtered_candidates_total", domain="retail", rule="purchased") == 1
        assert app.state.services.impressions.flush(timeout=10)  # the fallback's slates are logged too
        assert delta("recsys_impressions_logged_total", domain="retail") == 14

        # the watcher rebuilds the fallback from the lake: a new best seller shows up
        write_events(_events([(f"r_y{n}", "r_i13", "purchase", NOW) for n in range(30)]), paths,
                     basename="more-{i}", replace_partitions=False)
        _wait_until(lambda: _recommend(client)["items"][0]["item_id"] == "r_i13")

        publish(ArtifactRegistry(settings.artifacts_root), "v1")
        _wait_until(lambda: client.get("/healthz").json()["releases"] == {"retail": "v1"})
        body = _recommend(client)
        assert body["release"] == "v1" and body["path"] != LAKE_POPULARITY and not body["degraded"]
        assert client.get("/readyz").json() == {"status": "ready", "releases": {"retail": "v1"}, "missing": [],
                                                "degraded": []}
        assert app.state.services.releases.fallbacks.get("retail") is None  # dropped, not rebuilt
    assert delta("recsys_fallback_answers_total", domain="retail") > 2  # the polls above
    assert delta("recsys_fallback_builds_total", domain="retail", outcome="built") >= 2


def test_a_release_that_does_not_load_is_replaced_by_the_fallback(
    world, store: OnlineFeatures, publish: Callable[..., str], tmp_path: Path, metric_delta: type
) -> None:
    settings = _settings(tmp_path, ["retail"])
    _retail_lake(DataPaths(settings.data_root), world.catalog)
    registry = ArtifactRegistry(settings.artifacts_root)
    publish(registry, "v1")  # CURRENT names v1, whose ranker is then corrupted on disk
    weights = next((registry.release_path("retail", "v1") / "ranker").rglob("*.npz"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    app = create_app(settings, features=store)
    delta = metric_delta(app.state.services.metrics)
    with TestClient(app) as client:
        assert app.state.services.releases.refusal_report()["retail"]["version"] == "v1"
        body = _recommend(client)
        assert (body["path"], body["degraded"]) == (LAKE_POPULARITY, True)
        assert [item["item_id"] for item in body["items"]] == EXPECTED_SLATE
        assert client.get("/readyz").json()["degraded"] == ["retail"]

        publish(registry, "v2")
        _wait_until(lambda: _recommend(client)["path"] != LAKE_POPULARITY)
        assert client.get("/readyz").json() == {"status": "ready", "releases": {"retail": "v2"}, "missing": [],
                                                "degraded": []}
    assert delta("recsys_release_loads_total", domain="retail", outcome="refused") == 1
    assert delta("recsys_fallback_answers_total", domain="retail") >= 1


def test_a_domain_without_data_or_release_answers_503(world, store: OnlineFeatures, tmp_path: Path) -> None:
    settings = _settings(tmp_path, ["retail", "banking"])
    write_catalog(world.catalog, DataPaths(settings.data_root), "retail")  # a catalog, no events yet
    with TestClient(create_app(settings, features=store)) as client:
        body = _recommend(client, k=4)  # no popularity yet: the catalog back-fills
        assert body["path"] == LAKE_POPULARITY and body["release"] == "lake-catalog"
        assert all(item["reasons"] == ["backfill:catalog"] for item in body["items"]) and len(body["items"]) == 4
        response = client.post("/v1/recommendations", json={"user_id": "b_u1", "domain": "banking"})
        assert response.status_code == 503
        assert "no release is loaded for domain 'banking'" in response.json()["error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "releases": {}, "missing": ["banking"], "degraded": ["retail"]}


class StoreDown:
    def user_features(self, user_id: str):
        raise ConnectionError("online store unreachable")

    def item_features(self, item_ids):
        raise ConnectionError("online store unreachable")


def test_banking_fallback_applies_eligibility_from_the_lake(catalog_row, tmp_path: Path) -> None:
    settings = _settings(tmp_path, ["banking"])
    paths = DataPaths(settings.data_root)
    write_catalog(pd.DataFrame([
        catalog_row("b_card_basic", "Cards>Credit>Basic", min_age=18, min_income=10_000.0),
        catalog_row("b_card_gold", "Cards>Credit>Gold", min_age=21, min_income=60_000.0, min_credit_score=700),
        catalog_row("b_loan", "Loans>Personal", max_dti=0.4, requires_no_arrears=True, max_age=70),
        catalog_row("b_savings", "Savings>Instant"),
        catalog_row("b_student", "Cards>Credit>Student", max_age=25),
        catalog_row("b_insurance", "Insurance>Home"),
    ]), paths, "banking")
    write_users(pd.DataFrame([{"user_id": "b_u1", "domain": "banking", "signed_up_at": NOW - timedelta(days=99),
                               "age": 30, "income": 20_000.0, "credit_score": 650, "dti": 0.2,
                               "has_arrears": False, "products_held": ["b_card_basic"]}]), paths, "banking")
    day = NOW - timedelta(days=1)
    popular = ["b_card_gold", "b_card_basic", "b_student", "b_loan", "b_savings", "b_insurance"]
    write_events(_events([(f"b_x{n}", item, "application_start", day) for rank, item in enumerate(popular)
                          for n in range(10 - rank)] + [("b_u1", "b_insurance", "decline", day)]), paths)
    metrics = ServingMetrics()
    fallbacks = FallbackManager(settings.domains, paths, StoreDown(), settings.fallback,
                                {"banking": settings.rules["banking"].filters}, metrics, 60.0)
    manager = ReleaseManager(settings.domains, ArtifactRegistry(settings.artifacts_root),
                             lambda domain, version: pytest.fail("no release to load"), metrics, fallbacks=fallbacks)
    manager.maintain_fallbacks()
    assert manager.degraded() == ["banking"] and manager.missing() == []
    pipeline = Pipeline(settings, manager, StoreDown(), metrics)
    try:
        def slate(user: str) -> list[str]:
            result = pipeline.recommend(Request(user, "banking", 5), rng=np.random.default_rng(0))
            assert result.path == LAKE_POPULARITY
            return [item.item_id for item in result.items]

        # income too low for gold, too old for student, holds basic, declined insurance
        assert slate("b_u1") == ["b_loan", "b_savings"]
        # unknown to the lake and the store: only products without constraints
        assert slate("b_u2") == ["b_savings", "b_insurance"]
    finally:
        pipeline.close()
