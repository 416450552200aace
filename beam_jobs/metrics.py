"""The job's own metrics: freshness, throughput, dead letters, pushes.

Exported three ways: a Prometheus text file (``<data>/streaming/metrics.prom``, for a node-exporter
textfile collector), an optional HTTP endpoint (``--metrics-port``, 127.0.0.1) and a JSON summary
(``<data>/streaming/summary.json``) with freshness percentiles over the most recent samples.
Freshness is, per pushed feature row, the wall-clock time from the arrival of the oldest event it
newly reflects (``ingested_at``, or when the tailer first saw the line) to its push returning --
from then on the row is readable online.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Metric, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

FRESHNESS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0)
MAX_SAMPLES = 200_000
PUSHED_PREFIX = "pushed."
DEAD_LETTER_PREFIX = "dead_letter."


def percentiles(values: Iterable[float]) -> dict[str, float | int]:
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    return {"count": int(data.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(data.max())}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _prefixed(totals: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(totals.items()) if k.startswith(prefix)}


class _Histogram:
    """Cumulative Prometheus-style buckets of one view's freshness."""

    def __init__(self) -> None:
        self.counts = [0] * len(FRESHNESS_BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for k, bound in enumerate(FRESHNESS_BUCKETS):
            if value <= bound:
                self.counts[k] += 1

    def buckets(self) -> list[tuple[str, float]]:
        return [*((str(b), float(c)) for b, c in zip(FRESHNESS_BUCKETS, self.counts, strict=True)),
                ("+Inf", float(self.total))]


class StreamMetrics:
    """The job's counters and freshness distribution, and their exports.

    A Prometheus *collector* over the job's own totals (not ``prometheus_client`` metric objects:
    importing Feast switches those to multiprocess mode, where same-named metrics share values).
    """

    def __init__(self, out_dir: Path, port: int | None = None) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._samples: dict[str, deque[float]] = {}
        self._histograms: dict[str, _Histogram] = {}
        self._totals: Tally[str] = Tally()
        self._busy = 0.0
        self._batch_count = 0
        self._started: float | None = None
        self._last_commit: float | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._server = start_http_server(port, addr="127.0.0.1", registry=self.registry)[0] if port else None

    def record_batch(
        self, counters: Mapping[str, int], freshness: Iterable[tuple[str, float]], started: float, seconds: float
    ) -> None:
        self._started = started if self._started is None else self._started
        self._last_commit = started + seconds
        self._busy += seconds
        self._batch_count += 1
        self._totals.update(counters)
        for view, value in freshness:
            self._histograms.setdefault(view, _Histogram()).observe(value)
            self._samples.setdefault(view, deque(maxlen=MAX_SAMPLES)).append(value)

    def collect(self) -> Iterator[Metric]:
        """Prometheus metric families (``prometheus_client`` collector protocol)."""
        yield CounterMetricFamily("recsys_stream_events", "Valid, unique events processed",
                                  value=self.unique_events(self._totals))
        yield CounterMetricFamily("recsys_stream_lines", "Input lines read", value=self._totals.get("lines", 0))
        yield CounterMetricFamily("recsys_stream_batches", "Micro-batches committed", value=self._batch_count)
        yield CounterMetricFamily("recsys_stream_event_time_clamped", "Events stamped later than their arrival "
                                  "plus the future tolerance (a fast client clock), windowed at that bound",
                                  value=self._totals.get("event_time_clamped", 0))
        yield CounterMetricFamily("recsys_stream_busy_seconds", "Wall time spent in micro-batches", value=self._busy)
        dead = CounterMetricFamily("recsys_stream_dead_letters", "Records sent to the dead-letter store",
                                   labels=["reason"])
        for reason, value in _prefixed(self._totals, DEAD_LETTER_PREFIX).items():
            dead.add_metric([reason], value)
        yield dead
        pushed = CounterMetricFamily("recsys_stream_pushed_rows", "Feature rows pushed online", labels=["view"])
        for view, value in _prefixed(self._totals, PUSHED_PREFIX).items():
            pushed.add_metric([view], value)
        yield pushed
        fresh = HistogramMetricFamily("recsys_stream_freshness_seconds",
                                      "Event arrival to feature row readable online", labels=["view"])
        for view, histogram in sorted(self._histograms.items()):
            fresh.add_metric([view], histogram.buckets(), sum_value=histogram.sum)
        yield fresh

    @staticmethod
    def unique_events(counters: Mapping[str, int]) -> int:
        return counters.get("valid_events", 0) - counters.get("duplicates", 0)

    def summary(self) -> dict[str, Any]:
        events = self.unique_events(self._totals)
        span = (self._last_commit - self._started) if self._started and self._last_commit else 0.0
        return {
            "updated_at": time.time(),
            "batches": self._batch_count,
            "lines": self._totals.get("lines", 0),
            "events": events,
            "events_per_second": events / span if span > 0 else 0.0,
            "capacity_events_per_second": events / self._busy if self._busy > 0 else 0.0,
            "dead_letters": _prefixed(self._totals, DEAD_LETTER_PREFIX),
            "pushed": _prefixed(self._totals, PUSHED_PREFIX),
            "counters": dict(sorted(self._totals.items())),
            "freshness_seconds": {
                "all": percentiles(v for samples in self._samples.values() for v in samples),
                **{view: percentiles(samples) for view, samples in sorted(self._samples.items())},
            },
        }

    def export(self) -> dict[str, Any]:
        """Write the Prometheus text file and the JSON summary; returns the summary."""
        write_to_textfile(str(self.out_dir / "metrics.prom"), self.registry)
        summary = self.summary()
        _atomic_write(self.out_dir / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        return summary

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
