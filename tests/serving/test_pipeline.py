"""The request pipeline on a real release and a real online store; fakes only inject faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pytest

from common.features import NO_TIME_DAYS
from common.online_features import ItemFeatures, OnlineFeatures, UserFeatures
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from serving.features import ItemFeatureCache
from serving.metrics import ServingMetrics
from serving.pipeline import (
    COLD_START,
    FULL,
    POPULARITY_FALLBACK,
    RETRIEVAL_ORDER,
    Pipeline,
    Request,
    Result,
    with_streamed_activity,
)
from serving.protocols import FeatureReader
from serving.release_loader import Release, ReleaseLoader
from serving.releases import ReleaseManager
from serving.settings import (
    BoostRules,
    Budgets,
    DiversityRules,
    ExplorationRules,
    ServingSettings,
    load_settings,
)
from serving.stages import BoundedPool, PoolFull

# Generous budgets keep the happy path deterministic on a loaded 2-core CI box; the fault tests
# check that a stage over ITS budget is abandoned and the answer still comes in time.
BUDGETS = Budgets(total=5000, user_features=1000, retrieval=2000, item_features=1000, ranking=300)
OUT_OF_STOCK = "r_i07"  # see conftest: out of stock in the real-time item_stats view only


class FlakyStore:
    """The real online store, with user and/or item reads made to fail."""

    def __init__(self, store: OnlineFeatures, users_down: bool = False, items_down: bool = False) -> None:
        self.store, self.users_down, self.items_down = store, users_down, items_down

    def user_features(self, user_id: str) -> UserFeatures:
        if self.users_down:
            raise ConnectionError("online store unreachable")
        return self.store.user_features(user_id)

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        if self.items_down:
            raise ConnectionError("item read failed")
        return self.store.item_features(item_ids)


class FaultyScorer:
    """The real ranker, made to raise or to stall."""

    def __init__(self, scorer, fault: str) -> None:
        self.scorer, self.fault, self.config = scorer, fault, scorer.config

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.fault == "raise":
            raise RuntimeError("ranker crashed")
        time.sleep(2.0)
        return self.scorer.score(features)


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


@pytest.fixture(scope="module")
def registry(publish: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> ArtifactRegistry:
    registry = ArtifactRegistry(tmp_path_factory.mktemp("pipeline_artifacts"))
    publish(registry, "v1")
    return registry


@pytest.fixture(scope="module")
def release(registry: ArtifactRegistry, store: OnlineFeatures, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """v1 of the world, loaded once for the module by the real loader (item cache warmed)."""
    loader = ReleaseLoader(registry, DataPaths(tmp_path_factory.mktemp("data")), store, item_cache_ttl=3600)
    return loader.load("retail", "v1")


@pytest.fixture
def settings(data_paths: DataPaths) -> ServingSettings:
    """No exploration, no boosts, no diversity caps: the slate order is the ranked order."""
    base = load_settings(domains=["retail"])
    rules = base.rules["retail"].model_copy(update={
        "exploration": ExplorationRules(share=0.0), "boost": BoostRules(margin_lift=0, new_lift=0),
        "diversity": DiversityRules(max_share=1.0)})
    return base.model_copy(update={"budgets_ms": BUDGETS, "rules": {"retail": rules}})


@pytest.fixture
def serve(settings: ServingSettings, registry: ArtifactRegistry, metric_delta: type) -> Callable[..., tuple]:
    """``serve(live_release, features, user_id)`` -> (result, metric deltas, seconds) through a real
    release manager and pipeline."""
    return lambda live, features, user_id: _serve(settings, registry, live, features, user_id, metric_delta)


def _serve(settings: ServingSettings, registry: ArtifactRegistry, live: Release, features: FeatureReader,
           user_id: str, metric_delta: type) -> tuple[Result, Callable[..., float], float]:
    metrics = ServingMetrics()
    counts = metric_delta(metrics)
    manager = ReleaseManager(("retail",), registry, lambda domain, version: live, metrics)
    manager.poll_once()
    pipeline = Pipeline(settings, manager, features, metrics)
    try:
        start = time.perf_counter()
        result = pipeline.recommend(Request(user_id, "retail", 8, device="ios"), rng=np.random.default_rng(0))
        return result, counts, time.perf_counter() - start
    finally:
        pipeline.close()


def test_full_path_ranks_with_the_real_ranker(serve, release, store) -> None:
    result, counts, _ = serve(release, store, "r_u02")
    ids = [i.item_id for i in result.items]
    assert result.path == FULL and result.release == "v1"
    assert len(ids) == 8 and len(set(ids)) == 8
    history = store.user_features("r_u02").values
    bought = {i for i, n in zip(history["hist_item_ids"], history["hist_item_purchases"], strict=True) if n > 0}
    assert OUT_OF_STOCK not in ids and not bought & set(ids)
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)  # no boost/diversity/exploration: the ranker's order
    assert all(i.retrievers for i in result.items)
    assert {"collaborative", "content", "popular"} & {r for i in result.items for r in i.retrievers}
    assert counts("recsys_serving_path_total", domain="retail", path=FULL) == 1
    assert counts("recsys_stage_latency_seconds_count", domain="retail", stage="ranking") == 1


def test_unknown_user_gets_a_cold_start_slate(serve, release, store) -> None:
    result, _, _ = serve(release, store, "r_never_seen")
    assert result.path == COLD_START
    assert len({i.item_id for i in result.items}) == 8
    assert all(set(i.retrievers) <= {"popular", "content"} for i in result.items)


def test_a_bootstrapped_ranker_does_not_rank_cold_users(serve, release, store) -> None:
    """A ranker trained without impressions (bootstrap: users' later interactions) never saw a user
    without history: a cold user keeps the retrievers' fused order, a known user is still ranked."""
    from dataclasses import replace as with_fields

    summaries = {"ranker": {"ranking_data": {"source": "bootstrap", "users": 40}}}
    bootstrapped = with_fields(release, manifest=with_fields(release.manifest, extra={"summaries": summaries}))
    assert release.ranks_cold_users and not bootstrapped.ranks_cold_users
    cold, counts, _ = serve(bootstrapped, store, "r_never_seen")
    assert cold.path == COLD_START and len(cold.items) == 8
    assert counts("recsys_stage_latency_seconds_count", domain="retail", stage="ranking") == 0
    warm, counts, _ = serve(bootstrapped, store, "r_u02")
    assert warm.path == FULL
    assert counts("recsys_stage_latency_seconds_count", domain="retail", stage="ranking") == 1


def test_store_down_serves_popularity(serve, release, store) -> None:
    result, counts, elapsed = serve(release, FlakyStore(store, True, True), "r_u02")
    assert result.path == POPULARITY_FALLBACK and len(result.items) == 8
    assert all(set(i.retrievers) <= {"popular"} for i in result.items)
    assert counts("recsys_stage_failures_total", domain="retail", stage="user_features", kind="error") == 1
    assert elapsed < 1.0


@pytest.mark.parametrize("fault", ["raise", "slow"])
def test_ranker_failure_serves_the_retrieval_order(serve, release, store, fault: str) -> None:
    faulty = replace(release, scorer=FaultyScorer(release.scorer, fault))
    result, counts, elapsed = serve(faulty, store, "r_u02")
    assert result.path == RETRIEVAL_ORDER and len(result.items) == 8
    kind = "error" if fault == "raise" else "timeout"
    assert counts("recsys_stage_failures_total", domain="retail", stage="ranking", kind=kind) == 1
    assert counts("recsys_serving_path_total", domain="retail", path=RETRIEVAL_ORDER) == 1
    fused = [i.score for i in result.items]  # reciprocal-rank fusion: at most 3 retrievers x 1/61
    assert fused == sorted(fused, reverse=True) and max(fused) <= 3 / 61
    assert elapsed < BUDGETS.ranking / 1000 + 1.0  # the stalled ranker (2 s) is not waited for


def test_item_store_down_uses_the_warm_cache_or_skips_ranking(serve, release, store) -> None:
    flaky = FlakyStore(store)
    warm = ItemFeatureCache(release.catalog, flaky, ttl=0.0)  # every request tries to refresh
    warm.refresh(np.arange(len(release.catalog)))
    flaky.items_down = True
    result, counts, _ = serve(replace(release, items=warm), flaky, "r_u02")
    assert result.path == FULL  # stale but known features: still ranked
    assert counts("recsys_stage_failures_total", domain="retail", stage="item_features", kind="error") == 1

    cold = ItemFeatureCache(release.catalog, flaky, ttl=0.0)
    result, _, _ = serve(replace(release, items=cold), flaky, "r_u02")
    assert result.path == RETRIEVAL_ORDER  # never-fetched items are not ranked on defaults
    assert OUT_OF_STOCK in release.catalog.row_of  # the catalog says in stock, the store was never read


def test_a_new_item_gets_a_content_slot(release, store) -> None:
    """An item launched two days ago that the content top-n leaves out enters the content list through
    the new-item slots; one launched a year ago (every other item) does not."""
    from models.retrieval.new_items import DAY_SECONDS, NewItemIndex, NewItemSlots, content_with_new_items

    history = list(store.user_features("r_u02").values["hist_item_ids"])
    n, now = 6, release.catalog.launched_ts.max() + 365 * DAY_SECONDS
    plain, _ = release.retrievers.content(history, {}, n)
    newcomer = next(i for i in reversed(release.catalog.ids(range(len(release.catalog))))
                    if i not in plain and i not in history)
    launched = np.where(release.catalog.item_ids == newcomer, now - 2 * DAY_SECONDS, release.catalog.launched_ts)
    index = NewItemIndex.from_bundle(release.retrievers.root, release.catalog.item_ids, launched)
    ids, scores = content_with_new_items(release.retrievers, index, NewItemSlots(share=0.2, days=14), history, {}, n, now)
    assert newcomer in ids and len(ids) == n == len(set(ids)) and not set(history) & set(ids)
    assert list(scores) == sorted(scores, reverse=True)
    assert content_with_new_items(release.retrievers, index, NewItemSlots(share=0.0), history, {}, n, now)[0] == plain


def test_item_features_due_soon_are_read_ahead_off_the_request_path(release, store) -> None:
    """The release watcher's ``refresh_ahead`` reads the rows that go stale within its horizon, oldest
    first and at most ``limit``, so a request rarely finds a stale row to read from the store."""
    clock = [1000.0]
    cache = ItemFeatureCache(release.catalog, store, ttl=60.0, clock=lambda: clock[0])
    rows = np.arange(len(release.catalog))
    assert cache.refresh_ahead(within=5.0, limit=10) == 10  # never fetched: the first ten rows
    assert cache.refresh_ahead(within=5.0) == len(rows) - 10
    assert len(cache.stale(rows)) == 0 and cache.refresh_ahead(within=5.0) == 0  # all fresh
    clock[0] += 56.0  # every row is now within 5 s of its ttl (rows may be aged by up to TTL_JITTER x ttl)
    assert cache.refresh_ahead(within=5.0) == len(rows)
    assert cache.fetched_at.min() > 1000.0
    assert ItemFeatureCache(release.catalog, store, ttl=3.0).refresh_ahead(within=5.0) == 0  # ttl inside the horizon


def test_the_bounded_pool_refuses_past_workers_plus_queue_and_frees_places() -> None:
    pool, gate = BoundedPool(workers=1, queue=1), threading.Event()
    try:
        running = pool.submit(lambda: gate.wait(10))
        queued = pool.submit(lambda: "queued")
        with pytest.raises(PoolFull):
            pool.submit(lambda: "one too many")
        assert queued.cancel()  # an abandoned call frees its place at once
        after = pool.submit(lambda: "after")
        gate.set()
        assert running.result(timeout=10) and after.result(timeout=10) == "after"
    finally:
        gate.set()
        pool.shutdown()


def test_the_end_to_end_deadline_caps_the_stages(release, store, settings, registry, metric_delta) -> None:
    """A request that arrived most of its total budget ago: the stalled ranker gets only what is left
    (150 ms), not its own 300 ms budget."""
    metrics = ServingMetrics()
    counts = metric_delta(metrics)
    manager = ReleaseManager(("retail",), registry, lambda domain, version: replace(
        release, scorer=FaultyScorer(release.scorer, "stall")), metrics)
    manager.poll_once()
    pipeline = Pipeline(settings, manager, store, metrics)
    try:
        arrived = time.perf_counter() - (settings.budgets_ms.total - 150) / 1000.0  # 150 ms left
        result = pipeline.recommend(Request("r_u02", "retail", 8), rng=np.random.default_rng(0), arrived_at=arrived)
        seconds = time.perf_counter() - arrived
    finally:
        pipeline.close()
    assert result.path == RETRIEVAL_ORDER and result.items
    assert seconds < settings.budgets_ms.total / 1000.0 + 0.05
    assert sum(counts("recsys_stage_failures_total", domain="retail", stage="ranking", kind=kind)
               for kind in ("timeout", "deadline")) == 1


def test_the_ranker_sees_this_mornings_salary_change() -> None:
    """serving.pipeline.with_streamed_activity folds the account state in; without a streamed row the user is as read."""
    now = 1_000 * 86_400
    values = {"days_since_salary_change": NO_TIME_DAYS, "large_transfers_90d": 0, "last_event_ts": 0,
              "salary_change_ts": now - 3_600, "large_transfer_ts": [now - 60]}
    user = UserFeatures("b_u1", values, {"user_activity": True, "user_profile": True})
    ranked = with_streamed_activity(user, now)
    assert ranked.values["days_since_salary_change"] == 3_600 / 86_400 and ranked.values["large_transfers_90d"] == 1
    absent = UserFeatures("b_u1", values, {"user_activity": False, "user_profile": True})
    assert with_streamed_activity(absent, now) is absent
