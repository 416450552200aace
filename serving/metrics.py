"""Prometheus metrics of the serving process, on a registry of their own (one per app instance).

Several uvicorn workers (``recsys serving serve --workers N``) share one port, so a scrape reaches
one worker at random: ``recsys serving serve`` then runs prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, and :data:`WORKERS_DIR_ENV` naming the same directory) and
:meth:`ServingMetrics.render` answers the sum over every worker; a worker that stops takes its live
gauges out of that sum (:meth:`ServingMetrics.worker_stopped`). The ``/dashboard`` reads this
worker's registry only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from common.settings import env, variable
from serving.front import shed_count

# Set (with PROMETHEUS_MULTIPROC_DIR) by ``recsys serving serve`` when it starts several workers. Not
# PROMETHEUS_MULTIPROC_DIR itself: importing feast sets that one in any process that did not.
WORKERS_DIR_ENV = variable("metrics_workers_dir")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
COUNT_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 200, 300, 500, 1000)
RANKED_BUCKETS = (0, 50, 100, 200, 300, 400, 450, 490, 499, 500, 1000)  # fine near the 500 the ranker is sized for


class ProxyShed:
    """``recsys_proxy_shed_total{route}``: requests the nginx front refused, counted from its shed log
    (0 without a front: the series exists either way, so an alert's sum over it is never empty)."""

    def __init__(self, shed_log: Path | None) -> None:
        self.shed_log = shed_log

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("recsys_proxy_shed", "Requests refused with 503 by the nginx front before "
                                     "any worker saw them (every worker's in-flight slots were taken)", labels=["route"])
        family.add_metric(["/v1/recommendations"], 0 if self.shed_log is None else shed_count(self.shed_log))
        yield family


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._versions: dict[str, str] = {}
        self._proxy_shed = ProxyShed(env().serving_shed_log)
        r = self.registry
        r.register(self._proxy_shed)
        self.requests = Counter("recsys_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.shed = Counter("recsys_shed", "Requests refused with 503 by admission control, by route and reason "
                            "(in_flight: over the bound; deadline: waited past the total budget)",
                            ["route", "reason"], registry=r)
        self.stage_latency = Histogram("recsys_stage_latency_seconds", "Latency of each pipeline stage",
                                       ["domain", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.candidates = Histogram("recsys_candidates", "Candidates proposed per request by each retriever",
                                    ["domain", "retriever"], buckets=COUNT_BUCKETS, registry=r)
        self.ranked = Histogram("recsys_ranked_candidates",
                                "Merged, deduplicated candidates handed to the ranking stage per request",
                                ["domain", "path"], buckets=RANKED_BUCKETS, registry=r)
        self.filtered = Counter("recsys_filtered_candidates", "Candidates removed by each hard-filter rule",
                                ["domain", "rule"], registry=r)
        self.paths = Counter("recsys_serving_path", "Responses by degradation path (full, retrieval_order, ...)",
                             ["domain", "path"], registry=r)
        self.stage_failures = Counter("recsys_stage_failures", "Pipeline stages that failed or ran over budget",
                                      ["domain", "stage", "kind"], registry=r)
        self.release_info = Gauge("recsys_release_info", "1 for the release serving each domain, 0 for releases it replaced",
                                  ["domain", "version"], registry=r, multiprocess_mode="livemax")
        self.release_loads = Counter("recsys_release_loads", "Release load attempts by outcome",
                                     ["domain", "outcome"], registry=r)
        self.release_refused = Gauge("recsys_release_refused", "1 while the release CURRENT names (or CURRENT "
                                     "itself) is refused and the domain serves an older release or its lake "
                                     "fallback, 0 once CURRENT's release serves", ["domain"], registry=r,
                                     multiprocess_mode="livemax")
        self.fallback_answers = Counter("recsys_fallback_answers", "Answers served from the lake popularity fallback "
                                        "(the domain has no loaded release)", ["domain"], registry=r)
        self.fallback_active = Gauge("recsys_fallback_active", "1 while a domain is served from the lake popularity "
                                     "fallback, 0 once a release replaced it", ["domain"], registry=r,
                                     multiprocess_mode="livemax")
        self.fallback_builds = Counter("recsys_fallback_builds", "Builds of the lake popularity fallback by outcome "
                                       "(built, no_data, failed)", ["domain", "outcome"], registry=r)
        self.events = Counter("recsys_events", "Events received on /v1/events by outcome and reason",
                              ["outcome", "reason"], registry=r)
        self.event_storage_failures = Counter("recsys_event_storage_failures", "Event batches POST /v1/events "
                                              "could not write to disk, by reason (disk_full: answered 507, "
                                              "io_error: 503); nothing of them was acknowledged", ["reason"],
                                              registry=r)
        self.impressions = Counter("recsys_impressions_logged", "Impression events written to the stream",
                                   ["domain"], registry=r)
        self.impressions_submitted = Counter("recsys_impressions_submitted", "Impressions of served slates handed to "
                                             "the impression writer (queued or dropped): submitted - logged - "
                                             "lost is in flight", ["domain"], registry=r)
        self.impression_queue = Gauge("recsys_impression_queue_slates", "Served slates waiting in the impression "
                                      "writer's queue (what a kill -9 would lose)", registry=r,
                                      multiprocess_mode="livesum")
        self.impression_queue_capacity = Gauge("recsys_impression_queue_capacity", "Slates the impression writer's "
                                               "queue holds at most (beyond: dropped as queue_full)", registry=r,
                                               multiprocess_mode="livesum")
        self.impression_failures = Counter("recsys_impressions_lost", "Impressions that could not be written, by "
                                           "reason (queue_full, not_running, render_error, write_error)",
                                           ["domain", "reason"], registry=r)
        self.store_circuit = Gauge("recsys_online_store_circuit", "1 for the state of the online store's circuit "
                                   "breaker (closed, open: reads fail fast, half_open: one probe read), 0 for the "
                                   "others", ["state"], registry=r, multiprocess_mode="livemax")

    def set_release(self, domain: str, version: str) -> None:
        """Mark ``version`` as the live release of ``domain`` (1) and the one it replaces as 0."""
        previous = self._versions.get(domain)
        if previous is not None and previous != version:
            self.release_info.labels(domain, previous).set(0)
        self._versions[domain] = version
        self.release_info.labels(domain, version).set(1)

    def worker_stopped(self) -> None:
        """When this process is one of several workers (:data:`WORKERS_DIR_ENV`): take its live gauges
        (queue depth and capacity, release info, circuit state ...) out of the sum ``/metrics`` answers,
        so a stopped or restarted worker's values are not added to its successor's. Its counters stay
        (they are totals). A worker killed with -9 never gets here: its gauges stay until the service
        restarts."""
        workers_dir = env().metrics_workers_dir
        if workers_dir:
            mark_process_dead(os.getpid(), workers_dir)

    def render(self) -> bytes:
        """The exposition: this process's registry, or the sum over every worker of the service."""
        workers_dir = env().metrics_workers_dir
        if not workers_dir:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=workers_dir)
        merged.register(self._proxy_shed)
        return generate_latest(merged)
