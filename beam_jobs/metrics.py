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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, write_to_textfile

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


class StreamMetrics:
    def __init__(self, out_dir: Path, port: int | None = None) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.registry = CollectorRegistry()
        self.events = Counter("recsys_stream_events", "Valid, unique events processed", registry=self.registry)
        self.lines = Counter("recsys_stream_lines", "Input lines read", registry=self.registry)
        self.dead_letters = Counter(
            "recsys_stream_dead_letters", "Records sent to the dead-letter store", ["reason"], registry=self.registry
        )
        self.pushed = Counter("recsys_stream_pushed_rows", "Feature rows pushed online", ["view"], registry=self.registry)
        self.batches = Counter("recsys_stream_batches", "Micro-batches committed", registry=self.registry)
        self.freshness = Histogram(
            "recsys_stream_freshness_seconds", "Event arrival to feature row readable online",
            ["view"], buckets=FRESHNESS_BUCKETS, registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "recsys_stream_batch_seconds", "Wall time of one micro-batch", registry=self.registry
        )
        self._samples: dict[str, deque[float]] = {}
        self._totals: Tally[str] = Tally()
        self._busy = 0.0
        self._batch_count = 0
        self._started: float | None = None
        self._last_commit: float | None = None
        self._server = start_http_server(port, addr="127.0.0.1", registry=self.registry)[0] if port else None

    def record_batch(
        self, counters: Mapping[str, int], freshness: Iterable[tuple[str, float]], started: float, seconds: float
    ) -> None:
        self._started = started if self._started is None else self._started
        self._last_commit = started + seconds
        self._busy += seconds
        self._batch_count += 1
        self._totals.update(counters)
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.lines.inc(counters.get("lines", 0))
        self.events.inc(self.unique_events(counters))
        for name, value in counters.items():
            if name.startswith(DEAD_LETTER_PREFIX):
                self.dead_letters.labels(name.removeprefix(DEAD_LETTER_PREFIX)).inc(value)
            elif name.startswith(PUSHED_PREFIX):
                self.pushed.labels(name.removeprefix(PUSHED_PREFIX)).inc(value)
        for view, value in freshness:
            self.freshness.labels(view).observe(value)
            self._samples.setdefault(view, deque(maxlen=MAX_SAMPLES)).append(value)

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
            "dead_letters": {
                k.removeprefix(DEAD_LETTER_PREFIX): v for k, v in sorted(self._totals.items())
                if k.startswith(DEAD_LETTER_PREFIX)
            },
            "pushed": {
                k.removeprefix(PUSHED_PREFIX): v for k, v in sorted(self._totals.items()) if k.startswith(PUSHED_PREFIX)
            },
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
