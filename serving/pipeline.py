"""One recommendation request, stage by stage, each stage under its own deadline and all of them under the
request's end-to-end deadline.

    user features -> retrievers -> merge (provenance kept) -> item + cross features -> ranker (one
    batch) -> re-ranking -> slate

Degradation paths (the response says which one was taken; ``/metrics`` counts them):

- ``full``: everything worked;
- ``cold_start``: the user has no history -- popularity for their segment + content picks by profile,
  then ranked as usual (unless the ranker was bootstrapped from users' later interactions, without an
  impression log: it never saw a user without history, so the retrievers' fused order stands);
- ``retrieval_order``: the ranker failed or ran over budget, or item features are unavailable --
  the merged retrieval order (reciprocal-rank fusion) is re-ranked instead of the ranker's order;
- ``popularity_fallback``: the online store is unreachable (or no retriever answered) -- popular
  items of the release with default user features; eligibility rules then only pass products
  without constraints;
- ``lake_popularity``: the domain has no loaded release at all (none promoted yet, or it does
  not load) -- the popularity of the domain's lake events over the lake catalog
  (:mod:`serving.fallback`), through the same hard filters and re-ranking.

``retrieval_order``, ``popularity_fallback`` and ``lake_popularity`` are degraded answers (the
response says so), and so is any answer served without the user's online features (e.g. a
``legacy_segment`` slate while the store is down: the default segment's list).

Overload: the request's deadline (its arrival + the total budget, arrival as stamped by admission
control) caps every stage's budget, so time spent queueing is taken from the stages, not added to the
answer; a request with no time left before any work raises :class:`DeadlineExceeded` (the API answers
503), one with no time left before the ranker keeps the retrieval order. The worker pool's queue is
bounded (:class:`BoundedPool`): when it is full a stage fails at once (``recsys_stage_failures{kind=
"rejected"}``) and degrades, instead of queueing behind stages that already ran out of time (a stage
past its budget cannot be stopped: it finishes in the background, holding its worker).

An arm of variant ``legacy_segment`` (:mod:`serving.arms`) takes path ``legacy_segment`` instead:
user features -> the popularity list of the user's segment -> hard filters (no ranker; its rules
switch boosts, diversity and exploration off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, TypeVar

import numpy as np

from common.account_events import fresh_account_features
from common.cross_features import with_recent_activity
from common.features import USER_ACTIVITY, USER_HISTORY
from common.online_features import MAX_ITEMS, UserFeatures
from models.retrieval.new_items import content_with_new_items
from serving.arms import LEGACY_SEGMENT, Arm
from serving.catalog import CatalogIndex
from serving.eligibility import UserContext
from serving.fallback import LakeFallback
from serving.features import (
    category_affinity,
    history_row,
    ranker_batch,
    recent_history,
    segment_of,
    user_context,
)
from serving.metrics import ServingMetrics
from serving.protocols import FeatureReader, Retrieved
from serving.release_loader import Release
from serving.releases import ReleaseManager
from serving.reranking import Candidates, RetrieverScores, SlateItem, reorder, rerank
from serving.settings import ServingSettings
from serving.stages import BoundedPool, DeadlineExceeded, NotReady, PoolFull, StageFailed, left_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

FULL, COLD_START, RETRIEVAL_ORDER, POPULARITY_FALLBACK = "full", "cold_start", "retrieval_order", "popularity_fallback"
LAKE_POPULARITY = "lake_popularity"  # no release: the lake fallback
PATHS = (FULL, COLD_START, RETRIEVAL_ORDER, POPULARITY_FALLBACK, LEGACY_SEGMENT, LAKE_POPULARITY)
DEGRADED_PATHS = frozenset({RETRIEVAL_ORDER, POPULARITY_FALLBACK, LAKE_POPULARITY})
RRF_K = 60.0  # reciprocal-rank fusion constant


def with_streamed_activity(user: UserFeatures | None, now_ts: float) -> UserFeatures | None:
    """The user as the ranker sees them at ``now_ts``: the nightly ``user_history`` (the source of the cross
    features) with the streamed ``user_activity`` folded in, so what the user did since last night moves
    the slate, and the account features its account state keeps fresh (a salary change this morning)."""
    if user is None or not user.found.get(USER_ACTIVITY.name, False):
        return user
    merged = with_recent_activity(history_row(user), user.values)
    fresh = fresh_account_features(user.values, now_ts)
    return replace(user, values={**user.values, **merged, **fresh}, found={**user.found, USER_HISTORY.name: True})


@dataclass(frozen=True)
class Request:
    user_id: str
    domain: str
    k: int
    device: str | None = None
    session_id: str | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    items: tuple[SlateItem, ...]
    release: str
    path: str
    timings_ms: dict[str, float]
    features_missing: bool = False  # the user's online features could not be read (store down, slow, failing)

    @property
    def degraded(self) -> bool:
        """A degraded path, or any path (e.g. ``legacy_segment``) served on default user features."""
        return self.path in DEGRADED_PATHS or self.features_missing


def merge(results: dict[str, Retrieved], catalog: CatalogIndex, limit: int = MAX_ITEMS) -> Candidates:
    """Union of the retrievers' lists in reciprocal-rank-fusion order, keeping each one's score.

    Vectorised (one request merges ~600 ids): ties in fused score go to the lower catalog row, and a
    row's fused score adds its retrievers' terms in retriever order, as a plain loop would.
    """
    row_of = catalog.row_of
    names, rows, terms, scores = [], [], [], []
    for name, (item_ids, values) in results.items():
        found = np.fromiter(map(row_of.get, item_ids, repeat(-1)), dtype=np.int64, count=len(item_ids))
        ranks = np.flatnonzero(found >= 0)  # a rank counts the unknown ids before it, as retrieved
        names.append(name)
        rows.append(found[ranks])
        terms.append(1.0 / (RRF_K + ranks + 1.0))
        scores.append(np.asarray(values, dtype=np.float64)[ranks])
    if not rows or not sum(map(len, rows)):
        return Candidates(rows=np.zeros(0, dtype=np.int64), scores=np.zeros(0, dtype=np.float64), provenance=())
    unique, inverse = np.unique(np.concatenate(rows), return_inverse=True)
    fused = np.bincount(inverse, weights=np.concatenate(terms))  # sums in input order
    order = np.lexsort((unique, -fused))[:limit]
    slot = np.full(len(unique), -1, dtype=np.int64)
    slot[order] = np.arange(len(order))
    matrix = np.zeros((len(order), len(names)), dtype=np.float64)
    proposed = np.zeros((len(order), len(names)), dtype=bool)
    start = 0
    for j, values in enumerate(scores):
        at = slot[inverse[start:start + len(values)]]
        start += len(values)
        kept = at >= 0  # candidates past ``limit`` are dropped
        matrix[at[kept], j] = values[kept]  # a retriever listing an item twice: its last score
        proposed[at[kept], j] = True
    return Candidates(rows=unique[order], scores=fused[order],
                      provenance=RetrieverScores(tuple(names), matrix, proposed))


class Pipeline:
    def __init__(
        self,
        settings: ServingSettings,
        releases: ReleaseManager,
        features: FeatureReader,
        metrics: ServingMetrics,
        workers: int = 8,
    ) -> None:
        self.settings = settings
        self.releases = releases
        self.features = features
        self.metrics = metrics
        self._pool = BoundedPool(workers, settings.admission.pool_queue)

    def close(self) -> None:
        self._pool.shutdown()

    # ---- stage plumbing ------------------------------------------------------------------------

    def _bounded(self, domain: str, stage: str, budget_ms: float, deadline: float, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker pool; past ``budget_ms`` or the request's ``deadline`` give up on it (it
        finishes in the background)."""
        budget_ms = min(budget_ms, left_ms(deadline))
        if budget_ms <= 0:
            self.metrics.stage_failures.labels(domain, stage, "deadline").inc()
            raise StageFailed(f"{stage}: no time left before the request's deadline")
        return self._wait(domain, stage, budget_ms, self._submit(domain, stage, fn))

    def _submit(self, domain: str, stage: str, fn: Callable[[], T]) -> Future[T]:
        try:
            return self._pool.submit(fn)
        except PoolFull:
            self.metrics.stage_failures.labels(domain, stage, "rejected").inc()
            raise StageFailed(f"{stage}: the worker pool is full") from None

    def _wait(self, domain: str, stage: str, budget_ms: float, future: Future[T]) -> T:
        """The result of ``future`` within ``budget_ms``, else :class:`StageFailed` (counted)."""
        try:
            return future.result(timeout=budget_ms / 1000.0)
        except FutureTimeout:
            future.cancel()
            self.metrics.stage_failures.labels(domain, stage, "timeout").inc()
            raise StageFailed(f"{stage} exceeded {budget_ms:.0f} ms") from None
        except Exception as err:
            self.metrics.stage_failures.labels(domain, stage, "error").inc()
            log.warning("%s %s failed: %s: %s", domain, stage, type(err).__name__, err)
            raise StageFailed(f"{stage} failed") from err

    def _timed(self, domain: str, stage: str, started: float, timings: dict[str, float]) -> float:
        now = time.perf_counter()
        timings[stage] = (now - started) * 1000.0
        self.metrics.stage_latency.labels(domain, stage).observe(now - started)
        return now

    # ---- the request ---------------------------------------------------------------------------

    def recommend(self, request: Request, rng: np.random.Generator | None = None, now: datetime | None = None,
                  arm: Arm | None = None, arrived_at: float | None = None) -> Result:
        """The slate of ``request``, served by ``arm`` (default: the full pipeline with the domain's rules),
        by ``arrived_at`` + the total budget (``time.perf_counter()`` seconds; default: from now)."""
        served = self.releases.serving(request.domain)
        if served is None:
            raise NotReady(request.domain)
        domain = request.domain
        now_ts = (now or datetime.now(UTC)).timestamp()
        timings: dict[str, float] = {}
        start = t = time.perf_counter()
        deadline = (start if arrived_at is None else arrived_at) + self.settings.budgets_ms.total / 1000.0
        if deadline <= start:
            self.metrics.stage_failures.labels(domain, "total", "deadline").inc()
            raise DeadlineExceeded(f"waited {1000.0 * (start - deadline):.0f} ms past the request's deadline")
        user = self._user_features(request, deadline)
        t = self._timed(domain, "user_features", t, timings)
        if isinstance(served, LakeFallback):
            return self._from_lake(served, request, user, rng, now_ts, arm, timings, start, t)
        release = served

        history = recent_history(user)
        if arm is not None and arm.variant == LEGACY_SEGMENT:
            path = LEGACY_SEGMENT
        elif user is None:
            path = POPULARITY_FALLBACK
        else:
            path = FULL if history or history_row(user) is not None else COLD_START
        results = self._retrieve(release, request, user, history, path, deadline, now_ts)
        candidates = merge(results, release.catalog)
        for name, (ids, _) in results.items():
            self.metrics.candidates.labels(domain, name).observe(len(ids))
        t = self._timed(domain, "retrieval", t, timings)
        if len(candidates.rows) == 0 and path != LEGACY_SEGMENT:
            path = POPULARITY_FALLBACK

        if path == COLD_START and not release.ranks_cold_users:
            pass  # a bootstrapped ranker never saw a user without history: the retrievers' order stands
        elif path not in (POPULARITY_FALLBACK, LEGACY_SEGMENT) and left_ms(deadline) <= 0:
            self.metrics.stage_failures.labels(domain, "ranking", "deadline").inc()
            path = RETRIEVAL_ORDER
        elif path not in (POPULARITY_FALLBACK, LEGACY_SEGMENT):
            self.metrics.ranked.labels(domain, path).observe(len(candidates.rows))
            ranked = self._rank(release, request, user, candidates, now_ts, timings, t, deadline)
            t = time.perf_counter()
            if ranked is None:
                path = RETRIEVAL_ORDER
            else:
                candidates = ranked

        popular = results.get("popular", ((), None))[0]
        items = self._rerank(request, candidates, release.catalog, user_context(user, request.user_id),
                             release.items.in_stock(), release.catalog.rows_of(popular), rng, now_ts, arm)
        self._timed(domain, "reranking", t, timings)
        self._timed(domain, "total", start, timings)
        self.metrics.paths.labels(domain, path).inc()
        return Result(items=items, release=release.version, path=path, timings_ms=timings,
                      features_missing=user is None)

    def _user_features(self, request: Request, deadline: float) -> UserFeatures | None:
        """The user's online features within budget (None: the store is down, slow or failing)."""
        try:
            return self._bounded(request.domain, "user_features", self.settings.budgets_ms.user_features, deadline,
                                 lambda: self.features.user_features(request.user_id))
        except StageFailed:
            return None

    def _rerank(
        self, request: Request, candidates: Candidates, catalog: CatalogIndex, user: UserContext,
        in_stock: np.ndarray, backfill_rows: np.ndarray, rng: np.random.Generator | None, now_ts: float,
        arm: Arm | None,
    ) -> tuple[SlateItem, ...]:
        """Hard filters, boosts, back-fill, diversity and exploration under the arm's (or the domain's) rules."""
        slate = rerank(
            candidates, catalog, user, self.settings.rules[request.domain] if arm is None else arm.rules, request.k,
            in_stock=in_stock, backfill_rows=backfill_rows, now_ts=now_ts, rng=rng or np.random.default_rng(),
            exclude=request.exclude,
        )
        for rule, count in slate.removed.items():
            self.metrics.filtered.labels(request.domain, rule).inc(count)
        return slate.items

    def _from_lake(
        self, fallback: LakeFallback, request: Request, user: UserFeatures | None, rng: np.random.Generator | None,
        now_ts: float, arm: Arm | None, timings: dict[str, float], start: float, t: float,
    ) -> Result:
        """The slate of a domain without a release: its lake popularity, re-ranked as usual (path
        ``lake_popularity``)."""
        domain = request.domain
        popular = fallback.popular(self.settings.candidates_per_retriever)
        candidates = merge({"popular": popular}, fallback.catalog)
        self.metrics.candidates.labels(domain, "popular").observe(len(popular[0]))
        t = self._timed(domain, "retrieval", t, timings)
        items = self._rerank(request, candidates, fallback.catalog, fallback.user_context(request.user_id, user),
                             fallback.items.in_stock(), candidates.rows, rng, now_ts, arm)
        self._timed(domain, "reranking", t, timings)
        self._timed(domain, "total", start, timings)
        self.metrics.paths.labels(domain, LAKE_POPULARITY).inc()
        self.metrics.fallback_answers.labels(domain).inc()
        return Result(items=items, release=fallback.version, path=LAKE_POPULARITY, timings_ms=timings)

    def _retrieve(
        self, release: Release, request: Request, user: UserFeatures | None, history: list[str], path: str,
        request_deadline: float, now_ts: float,
    ) -> dict[str, Retrieved]:
        """Every retriever the path calls, each under what is left of the retrieval budget.

        The model-based retrievers run at once on the pool (TensorFlow and ScaNN release the GIL).
        Popularity is a look-up in an in-memory table (microseconds): it runs here, so the last-resort
        list never waits behind a busy pool.
        """
        n = self.settings.candidates_per_retriever
        retrievers = release.retrievers
        values: dict[str, Any] = {} if user is None else user.values
        calls: dict[str, Callable[[], Retrieved]] = {}
        if path == FULL:
            calls["collaborative"] = lambda: retrievers.collaborative(request.user_id, values, history, n)
        if path in (FULL, COLD_START):
            profile, new_items = category_affinity(user), release.new_items
            if new_items is None:
                calls["content"] = lambda: retrievers.content(history, profile, n)
            else:
                calls["content"] = lambda: content_with_new_items(retrievers, new_items, self.settings.new_items,
                                                                  history, profile, n, now_ts)
        deadline = min(time.perf_counter() + self.settings.budgets_ms.retrieval / 1000.0, request_deadline)
        running: dict[str, Future[Retrieved]] = {}
        for name, call in calls.items():
            try:
                if left_ms(deadline) <= 0:
                    self.metrics.stage_failures.labels(request.domain, f"retrieve_{name}", "deadline").inc()
                    continue
                running[name] = self._submit(request.domain, f"retrieve_{name}", call)
            except StageFailed:
                continue
        results: dict[str, Retrieved] = {}
        try:
            results["popular"] = retrievers.popular(segment_of(user, release.segment_column), n)
        except Exception as err:
            self.metrics.stage_failures.labels(request.domain, "retrieve_popular", "error").inc()
            log.warning("%s retrieve_popular failed: %s: %s", request.domain, type(err).__name__, err)
        for name, future in running.items():
            remaining_ms = max(left_ms(deadline), 1.0)
            try:
                results[name] = self._wait(request.domain, f"retrieve_{name}", remaining_ms, future)
            except StageFailed:
                continue
        return {name: results[name] for name in (*calls, "popular") if name in results}

    def _rank(
        self, release: Release, request: Request, user: UserFeatures | None, candidates: Candidates, now_ts: float,
        timings: dict[str, float], t: float, deadline: float,
    ) -> Candidates | None:
        """The candidates in the ranker's order, or None when ranking is not possible in budget."""
        domain, budgets = request.domain, self.settings.budgets_ms
        rows = candidates.rows
        try:
            if len(release.items.stale(rows)):  # usually none: then no store read, no trip to the pool
                self._bounded(domain, "item_features", budgets.item_features, deadline,
                              lambda: release.items.refresh(rows))
        except StageFailed:
            if not release.items.known(rows).all():
                self._timed(domain, "item_features", t, timings)
                return None  # never-fetched items would be ranked on defaults: keep the retrieval order
        t = self._timed(domain, "item_features", t, timings)
        wanted = {*release.scorer.config.numeric, *release.scorer.config.categorical}
        columns = {name: column[rows] for name, column in release.items.columns.items() if name in wanted}
        categories = list(release.catalog.categories[rows])
        ranked_user = with_streamed_activity(user, now_ts)

        def score() -> np.ndarray:
            batch = ranker_batch(release.scorer.config, ranked_user, columns, release.catalog.ids(rows), categories, now_ts,
                                 request.device)
            return np.asarray(release.scorer.score(batch), dtype=np.float64)

        try:
            scores = self._bounded(domain, "ranking", budgets.ranking, deadline, score)
        except StageFailed:
            return None
        finally:
            self._timed(domain, "ranking", t, timings)
        if scores.shape != rows.shape or not np.isfinite(scores).all():
            self.metrics.stage_failures.labels(domain, "ranking", "bad_output").inc()
            return None
        order = np.lexsort((np.arange(len(rows)), -scores))
        return Candidates(rows[order], scores[order], reorder(candidates.provenance, order))
