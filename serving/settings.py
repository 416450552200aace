"""Serving settings: ``config/serving.yaml`` (limits, budgets, re-ranking rules) plus the environment.

The API keys are never in a file: the key of ``POST /v1/events`` comes from ``RECSYS_API_KEY``, the
optional key of the read API (``POST /v1/recommendations``) from ``RECSYS_READ_API_KEY`` (or they are
passed explicitly). Without a read key the read API is open, as it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domains import domain as domain_config
from common.domains import writable_domains
from common.paths import DataPaths, artifacts_root
from common.settings import env
from models.retrieval.new_items import NewItemSlots


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterRules(_Frozen):
    out_of_stock: bool = True
    declined: bool = True
    eligibility: bool = False  # banking eligibility + responsible lending (catalog rule columns)
    purchased: bool = True  # derived from the domain's ``repurchase_allowed``, not from serving.yaml


class DiversityRules(_Frozen):
    category_level: int = Field(2, ge=1, le=10)  # taxonomy depth that defines a "product line"
    max_share: float = Field(0.3, gt=0, le=1)  # of the slate, per product line


class BoostRules(_Frozen):
    """Commercial boosts in rank positions, so the effect on rank is bounded whatever the score scale."""

    high_margin: float = Field(0.35, ge=-1, le=1)
    margin_lift: int = Field(2, ge=0)
    new_days: float = Field(30, ge=0)
    new_lift: int = Field(2, ge=0)
    max_rank_lift: int = Field(3, ge=0)


class ExplorationRules(_Frozen):
    share: float = Field(0.1, ge=0, le=1)
    min_position: int = Field(3, ge=0)  # 0-based: slots before it are never exploration slots


class RerankRules(_Frozen):
    filters: FilterRules = FilterRules()
    diversity: DiversityRules = DiversityRules()
    boost: BoostRules = BoostRules()
    exploration: ExplorationRules = ExplorationRules()


class Budgets(_Frozen):
    """Milliseconds per stage; the stages run one after the other, so together they fit the total."""

    total: float = Field(100, gt=0)
    user_features: float = Field(15, gt=0)
    retrieval: float = Field(35, gt=0)
    item_features: float = Field(15, gt=0)
    ranking: float = Field(25, gt=0)

    @model_validator(mode="after")
    def _stages_fit_the_total(self) -> Budgets:
        stages = self.user_features + self.retrieval + self.item_features + self.ranking
        if stages > self.total:
            raise ValueError(f"stage budgets add up to {stages} ms, more than the total of {self.total} ms")
        return self


class AdmissionSettings(_Frozen):
    """Admission control (:class:`serving.http.Admission`): requests in flight per serving process.

    A process answers ~75-140 recommendations/s on one core (~7-13 ms of CPU each, GIL-bound); requests
    in flight share the core and the GIL, so each one admitted beyond a few adds its CPU time to every
    other's latency: the excess is answered 503 + ``Retry-After`` at once instead of queueing into
    seconds of latency. At 3x capacity on this 2-core machine (2 workers) 4 in flight per worker kept
    the admitted p99 at 88 ms where 6 gave 135 ms and 12 gave 217 ms (``benchmarks.overload``). Event
    batches have their own bound (they are written + fsynced; a refused batch is retried by the client).
    """

    recommendations: int = Field(4, ge=1)
    events: int = Field(4, ge=1)
    retry_after_seconds: int = Field(1, ge=1)
    pool_queue: int = Field(16, ge=0)  # stage calls waiting for the pipeline's worker threads, at most


class StreamSettings(_Frozen):
    rotate_bytes: int = Field(16 * 2**20, ge=1024)
    rotate_seconds: float = Field(60, gt=0)
    # Served slates waiting for the impression writer, at most: ~1 minute of peak traffic if the disk stalls
    # (then new slates' impressions are dropped, counted in recsys_impressions_lost{reason="queue_full"}).
    impression_queue_slates: int = Field(10_000, ge=1)
    impression_flush_seconds: float = Field(5.0, ge=0)  # POST /v1/events waits this for earlier impressions
    # Retry-After of an event batch the disk could not store (507 full, 503 failing): longer than
    # admission's, as a disk takes longer to recover than a burst of traffic
    storage_retry_after_seconds: int = Field(5, ge=1)


class FallbackSettings(_Frozen):
    """The lake popularity fallback (:mod:`serving.fallback`): how a domain with data but no loaded
    release is served -- its positive events of the lake's last ``window_days``, decayed."""

    enabled: bool = True
    window_days: float = Field(30, gt=0)  # lake days read, up to the newest one with a positive event
    half_life_days: float = Field(7, gt=0)
    top_n: int = Field(500, ge=1)
    refresh_seconds: float = Field(300, gt=0)  # the release watcher rebuilds it from the lake this often
    retry_seconds: float = Field(30, gt=0)  # after a failed build or while the lake has no catalog


class CircuitSettings(_Frozen):
    """The online store's circuit breaker (:class:`serving.online.CircuitBreaker`)."""

    failures: int = Field(5, ge=1)  # consecutive failed reads that open it
    cool_down_seconds: float = Field(5.0, gt=0)  # reads fail fast this long, then one probe read


class ServingSettings(_Frozen):
    domains: tuple[str, ...]
    data_root: Path
    artifacts_root: Path
    api_key: str | None = Field(None, min_length=8, repr=False)
    read_api_key: str | None = Field(None, min_length=8, repr=False)  # RECSYS_READ_API_KEY; None: reads are open
    admission: AdmissionSettings = AdmissionSettings()
    budgets_ms: Budgets = Budgets()
    candidates_per_retriever: int = Field(200, ge=1, le=500)
    new_items: NewItemSlots = NewItemSlots()  # content-retriever places kept for recently launched items
    max_k: int = Field(100, ge=1, le=500)
    max_body_bytes: int = Field(2**20, ge=1024)
    max_events_per_batch: int = Field(1000, ge=1)
    max_exclude: int = Field(500, ge=0)
    stream: StreamSettings = StreamSettings()
    release_poll_seconds: float = Field(1.0, gt=0)
    item_cache_ttl_seconds: float = Field(60, ge=0)
    fallback: FallbackSettings = FallbackSettings()
    default_arm: str = "control"  # the arm of domains without an experiment (config/experiments.yaml)
    # Simulated time: when on, a request's optional ``context.timestamp`` is its served-at time (impressions,
    # ranker time features, newness boosts). Off in production: clients do not choose the clock.
    trust_context_timestamp: bool = False
    online_store: Literal["sqlite", "redis"] = "sqlite"  # RECSYS_ONLINE_STORE; Redis URL: RECSYS_REDIS_URL
    store_circuit: CircuitSettings = CircuitSettings()
    rules: dict[str, RerankRules] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules_for_every_domain(self) -> ServingSettings:
        missing = [d for d in self.domains if d not in self.rules]
        if missing:
            raise ValueError(f"no re-ranking rules for served domain(s) {missing}")
        return self

    @property
    def data_paths(self) -> DataPaths:
        return DataPaths(self.data_root)


def serving_file() -> Path:
    return env().serving_file


def _domain_rules(name: str, spec: dict) -> RerankRules:
    rules = RerankRules.model_validate(spec)
    purchased = not domain_config(name).repurchase_allowed
    return rules.model_copy(update={"filters": rules.filters.model_copy(update={"purchased": purchased})})


def _rules(served: tuple[str, ...], raw: dict) -> dict[str, RerankRules]:
    """Every served domain's re-ranking rules: its own block under ``domains:``, else ``default_rules:``
    (a domain declared with ``recsys domain add`` needs no serving.yaml edit), with the eligibility
    filter on when its declaration says its catalog carries eligibility rules."""
    explicit = raw.get("domains") or {}
    rules = {name: _domain_rules(name, spec) for name, spec in explicit.items()}
    default = raw.get("default_rules")
    for name in served:
        if name not in rules and default is not None:
            spec = {**default, "filters": {**default.get("filters", {}), "eligibility": domain_config(name).eligibility}}
            rules[name] = _domain_rules(name, spec)
    return rules


def load_settings(
    domains: list[str] | None = None, api_key: str | None = None, config_path: Path | None = None,
    read_api_key: str | None = None,
) -> ServingSettings:
    """Settings for the given domains (default: every writable domain) from the YAML file and the env."""
    raw = yaml.safe_load((config_path or serving_file()).read_text())
    variables = env()
    served = tuple(domains or writable_domains())
    for name in served:
        domain_config(name)  # raises on an unknown domain
    return ServingSettings(
        domains=served,
        data_root=DataPaths.default().root,
        artifacts_root=artifacts_root(),
        api_key=api_key or variables.api_key,
        read_api_key=read_api_key or variables.read_api_key,
        online_store=variables.online_store,
        rules=_rules(served, raw),
        **raw.get("serving", {}),
    )
