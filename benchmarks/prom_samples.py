"""Prometheus samples of a running service: parse a scrape, take the delta of two scrapes, add up
several processes' samples, and summarise a histogram (count, mean, bucket-interpolated quantiles)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from benchmarks.open_loop import QUANTILES

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus exposition text -> {(sample name, sorted labels): value}, ``*_created`` dropped."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric_delta(before: Samples, after: Samples) -> Samples:
    """``after - before`` for every sample of ``after`` (counters and histogram parts only grow)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def add_samples(parts: Iterable[Samples]) -> Samples:
    """Sum of several processes' samples (counters and histograms add up across workers)."""
    total: Samples = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def select(samples: Samples, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    wanted = set(labels.items())
    return [(dict(key), value) for (sample, key), value in samples.items()
            if sample == name and wanted <= set(key)]


def histogram_summary(samples: Samples, name: str, scale: float = 1.0, **labels: str) -> dict[str, float | None]:
    """Count, mean and p50/p95/p99 of one histogram series (delta), times ``scale``.

    Quantiles are interpolated linearly inside the bucket that holds them (Prometheus'
    ``histogram_quantile``): exact to the bucket, not to the request.
    """
    count = sum(v for _, v in select(samples, f"{name}_count", **labels))
    total = sum(v for _, v in select(samples, f"{name}_sum", **labels))
    out: dict[str, float | None] = {"count": count, "mean": round(total / count * scale, 3) if count else None}
    buckets: dict[float, float] = {}
    for key, value in select(samples, f"{name}_bucket", **labels):
        bound = float(key["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    bounds = sorted(buckets)
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = None
        if not count or not bounds:
            continue
        rank, lower, below = q * count, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if math.isinf(bound):
                    value = lower  # in the overflow bucket: the last finite bound is all we know
                else:
                    inside = buckets[bound] - below
                    value = lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
                out[f"p{round(q * 100)}"] = round(value * scale, 3)
                break
            lower, below = bound, buckets[bound]
    return out
