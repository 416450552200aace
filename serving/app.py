"""The online service: ``create_app(settings)`` builds the FastAPI application.

Every request is served by the user's experiment arm (:mod:`serving.arms`), returned in the response
and logged on the impressions. Routes: ``POST /v1/recommendations`` (a read API key when
``RECSYS_READ_API_KEY`` is set), ``POST /v1/events`` (API key), ``GET /healthz``, ``GET /readyz``,
``GET /metrics``. The keys are checked first (:class:`serving.http.RequireKey`), before admission
control and before the body is read. Admission control (:class:`serving.http.Admission`) bounds the recommendations and
the event batches in flight; a recommendation request has an end-to-end deadline from its arrival. Releases load when the app starts (lifespan) and a background
watcher hot-swaps new ones; a domain without a loaded release is served from its lake data
(:mod:`serving.fallback`, a degraded answer) until one loads. Every served slate is logged as
impressions: the request only queues the slate for the process's impression writer
(:class:`serving.stream.GroupCommitWriter`), which appends everything queued in one write + one
fsync; the writer is flushed and joined when the app stops.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI, HTTPException, Security
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader

from common.deadletter import DeadLetterWriter
from common.domains import domain as domain_config
from common.registry import ArtifactRegistry
from experiments.dashboard import dashboard_router
from serving.api_models import (
    ErrorBody,
    EventBatch,
    EventBatchResult,
    EventRejection,
    Health,
    RecommendationRequest,
    RecommendationResponse,
    SlateEntry,
    recommendation_request_model,
)
from serving.arms import ArmResolver
from serving.fallback import FallbackManager
from serving.gc_freeze import HeapFreezer
from serving.http import (
    DEADLINE,
    Admission,
    BodyLimit,
    CountRequests,
    RequireKey,
    arrived_at,
    install_error_handlers,
    retry_later,
)
from serving.intake import (
    DEAD_LETTER_SOURCE,
    ServedSlate,
    ingest,
    pending_impressions,
    storage_failure,
    storage_failure_reason,
)
from serving.metrics import ServingMetrics
from serving.online import CIRCUIT_STATES, CircuitBreaker, GuardedFeatureReader, LazyFeatureReader
from serving.pipeline import Pipeline, Request
from serving.protocols import FeatureReader
from serving.release_loader import ReleaseLoader
from serving.releases import ReleaseManager
from serving.settings import ServingSettings
from serving.stages import DeadlineExceeded, NotReady
from serving.stream import GroupCommitWriter, IncomingStreams

ROUTES = {"/v1/recommendations", "/v1/events", "/healthz", "/readyz", "/metrics"}
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 413, 422, 503)}
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="required by POST /v1/events")
READ_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ReadApiKey",
                            description="required by POST /v1/recommendations when RECSYS_READ_API_KEY is set")


@dataclass
class Services:
    """Everything a running app holds; built once per app."""

    settings: ServingSettings
    metrics: ServingMetrics
    releases: ReleaseManager
    pipeline: Pipeline
    arms: ArmResolver
    streams: IncomingStreams
    impressions: GroupCommitWriter
    dead_letters: DeadLetterWriter
    heap: HeapFreezer
    store: GuardedFeatureReader  # every online store read goes through its circuit breaker


def open_feature_reader(settings: ServingSettings) -> FeatureReader:
    """The Feast online store of the data root (SQLite by default, Redis with RECSYS_ONLINE_STORE)."""
    from common.online_features import OnlineFeatures
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(settings.data_paths, settings.online_store))


def guarded_reader(settings: ServingSettings, metrics: ServingMetrics, reader: FeatureReader) -> GuardedFeatureReader:
    """``reader`` behind the circuit breaker of ``settings.store_circuit``, its state on the metrics."""

    def show(state: str) -> None:
        for each in CIRCUIT_STATES:
            metrics.store_circuit.labels(each).set(1 if each == state else 0)

    circuit = settings.store_circuit
    return GuardedFeatureReader(reader, CircuitBreaker(circuit.failures, circuit.cool_down_seconds, on_change=show))


def build_services(settings: ServingSettings, features: FeatureReader | None = None) -> Services:
    metrics = ServingMetrics()
    store = guarded_reader(settings, metrics, features or LazyFeatureReader(lambda: open_feature_reader(settings)))
    features = store
    registry = ArtifactRegistry(settings.artifacts_root)
    loader = ReleaseLoader(registry, settings.data_paths, features, settings.item_cache_ttl_seconds)
    heap = HeapFreezer()  # full garbage collections off the request path (see serving.gc_freeze)
    fallbacks = FallbackManager(settings.domains, settings.data_paths, features, settings.fallback,
                                {d: settings.rules[d].filters for d in settings.domains}, metrics,
                                settings.item_cache_ttl_seconds)
    releases = ReleaseManager(settings.domains, registry, loader.load, metrics, settings.release_poll_seconds,
                              on_loaded=heap.release_loaded, fallbacks=fallbacks)
    streams = IncomingStreams(settings.data_paths, settings.stream.rotate_bytes, settings.stream.rotate_seconds)
    impressions = GroupCommitWriter(
        streams, on_written=lambda domain, n: metrics.impressions.labels(domain).inc(n),
        on_lost=lambda domain, n, reason: metrics.impression_failures.labels(domain, reason).inc(n),
        capacity=settings.stream.impression_queue_slates, name="impression-writer",
        on_submitted=lambda domain, n: metrics.impressions_submitted.labels(domain).inc(n),
        on_queue=metrics.impression_queue.set,
    )
    metrics.impression_queue_capacity.set(impressions.capacity)
    return Services(
        settings=settings,
        metrics=metrics,
        releases=releases,
        pipeline=Pipeline(settings, releases, features, metrics),
        arms=ArmResolver(settings),
        streams=streams,
        impressions=impressions,
        dead_letters=DeadLetterWriter(settings.data_paths, DEAD_LETTER_SOURCE),
        heap=heap,
        store=store,
    )


def _check_user(body: RecommendationRequest) -> None:
    prefix = domain_config(body.domain).id_prefix
    if not body.user_id.startswith(prefix):
        raise HTTPException(422, f"user_id must start with {prefix!r} in domain {body.domain!r}")


def limit_tensorflow_threads() -> None:
    """One intra-op and one inter-op TensorFlow thread, unless the environment says otherwise.

    A request's TensorFlow work is one query-tower call on one user: TF's default pools (a thread
    per core each) only spin on the cores the request threads need (measured 0.87 -> 0.47 ms CPU
    per call). Concurrency comes from requests. TF reads these variables when its runtime starts,
    so this acts only if no TensorFlow op has run in the process yet.
    """
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def create_app(settings: ServingSettings, features: FeatureReader | None = None) -> FastAPI:
    """The application. ``features`` replaces the online store reader (tests inject faults with it)."""
    limit_tensorflow_threads()
    services = build_services(settings, features)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.impressions.start()
        services.releases.start()
        try:
            yield
        finally:
            services.releases.stop()
            services.pipeline.close()
            services.impressions.close()  # every slate served so far reaches the stream before it closes
            services.streams.close()
            services.heap.close()
            services.metrics.worker_stopped()

    app = FastAPI(
        title="recsys serving", version="1", lifespan=lifespan,
        description="Real-time recommendations (retail + banking) and event intake.",
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(dashboard_router(settings.data_paths, registry=services.metrics.registry))
    request_body = recommendation_request_model(
        settings.domains, [domain_config(d).id_prefix for d in settings.domains], settings.max_k, settings.max_exclude
    )

    # the keys are checked by RequireKey; Security() documents them in the OpenAPI schema
    @app.post("/v1/recommendations", response_model=RecommendationResponse, responses=ERRORS,
              dependencies=[Security(READ_API_KEY)])
    def recommend(body: request_body, http: HttpRequest) -> Response:  # type: ignore[valid-type]
        """A slate of ``k`` items for one user, with per-item reasons and the degradation path taken."""
        _check_user(body)
        request_id = uuid.uuid4().hex
        request = Request(body.user_id, body.domain, body.k, body.context.device, body.context.session_id,
                          tuple(body.exclude))
        served_at = _served_at(settings, body.context.timestamp)
        arm = services.arms.arm(body.domain, body.user_id)
        try:
            result = services.pipeline.recommend(request, now=served_at, arm=arm, arrived_at=arrived_at(http.scope))
        except DeadlineExceeded as exceeded:  # it waited its whole budget before any work: shed, like the excess
            services.metrics.shed.labels("/v1/recommendations", DEADLINE).inc()
            raise retry_later(f"overloaded: {exceeded}; retry later", settings.admission.retry_after_seconds) from None
        except NotReady:
            raise HTTPException(503, f"no release is loaded for domain {body.domain!r} yet and the lake holds no "
                                     f"catalog of {body.domain!r} to serve popular items from") from None
        if result.items:  # queued, never written here: the request does not wait for the disk
            services.impressions.submit(pending_impressions(ServedSlate(
                body.domain, body.user_id, request_id, arm.name, result.items, body.context.session_id,
                body.context.device, served_at)))
        answer = RecommendationResponse(
            request_id=request_id,
            items=[SlateEntry(item_id=i.item_id, score=i.score, retrievers=dict(i.retrievers),
                              reasons=list(i.reasons), propensity=i.propensity) for i in result.items],
            release=result.release,
            arm=arm.name,
            path=result.path,
            degraded=result.degraded,
        )
        # Validated above, serialised here: returning the model would have FastAPI validate it again
        # on one more trip through the thread pool (a sync endpoint's response is checked there).
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.post("/v1/events", response_model=EventBatchResult, responses={**ERRORS, 507: {"model": ErrorBody}},
              dependencies=[Security(API_KEY)])
    def events(body: EventBatch) -> EventBatchResult:
        """Validate each event on its own; accepted ones join the incoming stream, rejected ones the dead letters."""
        if settings.api_key is None:  # with a key, RequireKey let only requests holding it in
            raise HTTPException(503, "event intake is disabled: no API key is configured (RECSYS_API_KEY)")
        if len(body.events) > settings.max_events_per_batch:
            raise HTTPException(413, f"at most {settings.max_events_per_batch} events per batch, got {len(body.events)}")
        # Feedback follows the slates it is about: the impressions of every slate this process served
        # before this call reach the stream first (one commit of the writer, bounded in time), so a click
        # posted after its slate never lands ahead of the slate's impressions.
        services.impressions.flush(timeout=services.settings.stream.impression_flush_seconds)
        try:
            result = ingest(body.events, services.streams, services.dead_letters)
        except OSError as err:  # a full or failing disk: nothing is acknowledged, the client retries the batch
            services.metrics.event_storage_failures.labels(storage_failure_reason(err)).inc()
            raise storage_failure(err, settings.stream.storage_retry_after_seconds) from err
        services.metrics.events.labels("accepted", "").inc(result.accepted)
        for reason, count in result.reasons.items():
            services.metrics.events.labels("rejected", reason).inc(count)
        return EventBatchResult(
            accepted=result.accepted,
            rejected=len(result.rejections),
            reasons=result.reasons,
            rejections=[EventRejection(index=r.index, code=r.code, field=r.field, detail=r.detail)
                        for r in result.rejections],
        )

    @app.get("/healthz", response_model=Health)
    def healthz() -> Response:
        """The process is up; ``refused``: domains serving a last-known-good release instead of CURRENT's."""
        health = Health(status="ok", releases=services.releases.versions(), degraded=services.releases.degraded(),
                        refused=services.releases.refusal_report())
        return JSONResponse(health.body())

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    def readyz() -> Response:
        """Ready once every served domain can answer: from its release, or (``degraded``) from its lake
        data or a last-known-good release (``refused`` says why); 503 while a domain can answer nothing
        (``missing``). An online store that fails (``store: open circuit``) leaves it ready: answers
        come from default or cached features, and say they are degraded."""
        missing = services.releases.missing()
        health = Health(status="ready" if not missing else "not ready", releases=services.releases.versions(),
                        missing=missing, degraded=services.releases.degraded(),
                        refused=services.releases.refusal_report(),
                        store="open circuit" if services.store.degraded else "ok")
        return JSONResponse(health.body(), status_code=503 if missing else 200)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus exposition."""
        return Response(services.metrics.render(), media_type=services.metrics.content_type)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Admission, limits={"/v1/recommendations": settings.admission.recommendations,
                                          "/v1/events": settings.admission.events},
                       retry_after_seconds=settings.admission.retry_after_seconds, metrics=services.metrics)
    app.add_middleware(RequireKey, keys={"/v1/recommendations": settings.read_api_key,  # None: open
                                         "/v1/events": settings.api_key})  # None: the route answers 503
    app.add_middleware(CountRequests, metrics=services.metrics, routes=ROUTES)  # outermost: counts 413s, 503s too
    return app


def _served_at(settings: ServingSettings, requested: datetime | None) -> datetime:
    """The request's time: the clock, or the client's ``context.timestamp`` under simulated time."""
    if settings.trust_context_timestamp and requested is not None:
        return requested
    return datetime.now(UTC)
