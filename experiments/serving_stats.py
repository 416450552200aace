"""The serving side of the dashboard, read from the service's Prometheus registry.

- per-stage latency: ``recsys_stage_latency_seconds`` (histogram, labels domain, stage) -> count, mean
  and p50/p95 estimated from the buckets (linear interpolation inside a bucket, as PromQL's
  ``histogram_quantile``);
- degradation paths: ``recsys_serving_path`` (counter, labels domain, path) -> share of responses;
- feature freshness: ``recsys_feature_freshness_seconds`` (gauge, labels domain, view: seconds since
  the view's newest value) when the service exports it.

Anything else that can produce a :class:`ServingStats` (a callable) can feed the dashboard instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from prometheus_client import CollectorRegistry

LATENCY_METRIC = "recsys_stage_latency_seconds"
PATH_METRIC = "recsys_serving_path"
FRESHNESS_METRIC = "recsys_feature_freshness_seconds"


@dataclass(frozen=True)
class StageLatency:
    domain: str
    stage: str
    count: float
    mean_ms: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class ServingStats:
    latency: list[StageLatency] = field(default_factory=list)
    path_shares: dict[str, dict[str, float]] = field(default_factory=dict)  # domain -> path -> share
    responses: dict[str, float] = field(default_factory=dict)  # domain -> responses counted
    freshness_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # domain -> view -> age

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


ServingStatsSource = Callable[[], ServingStats]


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Quantile ``q`` from cumulative ``(upper_bound, count)`` buckets sorted by bound (last: +Inf)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def registry_stats(registry: CollectorRegistry) -> ServingStats:
    """Read latency, path shares and freshness from a serving registry (absent metrics: empty)."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], float] = {}
    paths: dict[str, dict[str, float]] = defaultdict(dict)
    freshness: dict[str, dict[str, float]] = defaultdict(dict)
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if metric.name == LATENCY_METRIC:
                key = (labels.get("domain", ""), labels.get("stage", ""))
                if sample.name.endswith("_bucket"):
                    buckets[key].append((float(labels["le"]), sample.value))
                elif sample.name.endswith("_sum"):
                    sums[key] = sample.value
                elif sample.name.endswith("_count"):
                    counts[key] = sample.value
            elif metric.name == PATH_METRIC and sample.name.endswith("_total"):
                paths[labels.get("domain", "")][labels.get("path", "")] = sample.value
            elif metric.name == FRESHNESS_METRIC:
                freshness[labels.get("domain", "")][labels.get("view", "")] = sample.value
    latency = []
    for key in sorted(counts):
        n = counts[key]
        ordered = sorted(buckets[key])
        latency.append(StageLatency(key[0], key[1], n, 1000 * sums.get(key, 0.0) / n if n else math.nan,
                                    1000 * bucket_quantile(0.5, ordered), 1000 * bucket_quantile(0.95, ordered)))
    responses = {d: sum(v.values()) for d, v in paths.items()}
    shares = {d: {p: c / responses[d] for p, c in sorted(v.items())} for d, v in sorted(paths.items()) if responses[d]}
    return ServingStats(latency, shares, responses, {d: dict(sorted(v.items())) for d, v in sorted(freshness.items())})
