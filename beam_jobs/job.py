"""The local streaming job: tail ``incoming/`` in micro-batches, each one a Beam pipeline, exactly once.

Each step: plan the next byte ranges from the committed offsets and write the plan ahead
(``CheckpointStore.begin``) -> run the micro-batch pipeline on it (``microbatch``: dead letters, lake
files, Feast pushes, staged state) -> commit state, seen ids, watermarks and offsets in one SQLite
transaction. Restart safety (kill -9 at any moment):

- before the plan is written: nothing happened; the next run plans the same bytes again;
- between plan and commit: the next run finds the pending batch, deletes what its interrupted attempt
  wrote under the batch's name (dead-letter file, lake files) and its staged rows, then re-runs the
  SAME byte ranges against the SAME committed state: the lake files get the same names (replaced,
  not duplicated), Feast receives the same rows again (pushes overwrite), and the commit happens once;
- after the commit: the offsets, dedupe ids and state moved together, so nothing is read twice.

Lost: nothing. Counted twice: nothing -- every counter lives in state that only a commit changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feast.errors import FeatureViewNotFoundException

from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.feast_io import FeastTarget
from beam_jobs.features import FUTURE_TOLERANCE_SECONDS
from beam_jobs.metrics import StreamMetrics
from beam_jobs.microbatch import BatchSettings, MicroBatchPipeline
from beam_jobs.sinks import dead_letter_files, scratch_dir
from beam_jobs.tail import expired_files, plan_ranges
from common.paths import DataPaths
from common.settings import env, variable

LOG = logging.getLogger("beam_jobs")
CRASH_ENV = variable("stream_crash_at")  # fault injection for the restart tests: "<phase>:<batch id>"
PRUNE_EVERY_SECONDS = 600.0


@dataclass(frozen=True)
class StreamConfig:
    paths: DataPaths
    poll_interval: float = 1.0
    once: bool = False  # process what is there, then stop
    max_batch_bytes: int = 4 << 20
    settle_seconds: float = 5.0  # an unterminated last line this old counts as complete
    online: str = "sqlite"
    redis_url: str | None = None
    metrics_port: int | None = None
    dedupe_hours: float = 48.0
    seed_users: bool = True
    push_rows: int = 1_000
    future_tolerance_seconds: float = FUTURE_TOLERANCE_SECONDS  # client clocks ahead of arrival: clamped
    incoming_retention_hours: float | None = 24.0  # fully read incoming files this old are removed (None: kept)


def state_dir(paths: DataPaths) -> Path:
    """``<data>/streaming/``: checkpoint database, metrics, scratch files of the streaming job."""
    return paths.root / "streaming"


def checkpoint_path(paths: DataPaths) -> Path:
    return state_dir(paths) / "checkpoint.db"


@dataclass(frozen=True)
class BatchReport:
    batch: int
    counters: dict[str, int]
    seconds: float
    freshness: list[tuple[str, float]] = field(default_factory=list)
    recovered: bool = False


def _crash_point(phase: str, batch: int) -> None:
    if env().stream_crash_at == f"{phase}:{batch}":  # fault injection for the restart tests
        LOG.warning("fault injection: SIGKILL at %s of batch %d", phase, batch)
        os.kill(os.getpid(), signal.SIGKILL)


class FileStreamJob:
    """The micro-batch driver over one data root."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        paths = config.paths
        self.store = CheckpointStore(checkpoint_path(paths))
        target = FeastTarget(str(paths.root), config.online, config.redis_url)
        self.settings = BatchSettings(
            str(paths.root), str(checkpoint_path(paths)), target, config.seed_users, config.push_rows,
            config.future_tolerance_seconds,
        )
        try:
            self._online = target.open()  # opened once, kept alive for the DoFns of every batch
        except FeatureViewNotFoundException as err:
            raise RuntimeError(
                f"the Feast registry under {paths.root} lacks the feature views ({err}); "
                "register them first: recsys features apply"
            ) from err
        self.pipeline = MicroBatchPipeline(self.settings)
        self.metrics = StreamMetrics(state_dir(paths), config.metrics_port)
        self._last_prune = 0.0

    def close(self) -> None:
        self.metrics.close()
        self.store.close()

    def _recover(self, batch: Batch) -> None:
        """Undo what an interrupted attempt of ``batch`` may have written, before re-running it."""
        LOG.warning("batch %d was interrupted before its commit: re-running its %d range(s)", batch.id, len(batch.ranges))
        paths, name = self.config.paths, batch.name
        self.store.discard_staged(batch.id)
        for file in [*dead_letter_files(paths, name), *paths.events.glob(f"domain=*/date=*/{name}.parquet")]:
            file.unlink()
        shutil.rmtree(scratch_dir(paths), ignore_errors=True)

    def next_batch(self) -> tuple[Batch, bool] | None:
        """The pending batch of an interrupted run (recovered), else a newly planned one, else None."""
        pending = self.store.pending()
        if pending is not None:
            self._recover(pending)
            return pending, True
        settle = None if self.config.once else self.config.settle_seconds
        ranges = plan_ranges(self.config.paths.incoming(), self.store.offsets(), self.config.max_batch_bytes, settle)
        return (self.store.begin(ranges), False) if ranges else None

    def step(self) -> BatchReport | None:
        """Process one micro-batch; None when there is nothing new."""
        planned = self.next_batch()
        if planned is None:
            return None
        batch, recovered = planned
        started = time.time()
        counters = self.pipeline.run()
        _crash_point("before_commit", batch.id)
        freshness = self.store.staged_freshness(batch.id)
        self.store.commit(batch)
        seconds = time.time() - started
        self.metrics.record_batch(counters, freshness, started, seconds)
        return BatchReport(batch.id, counters, seconds, freshness, recovered)

    def _maintain(self) -> None:
        now = time.time()
        if now - self._last_prune >= PRUNE_EVERY_SECONDS:
            pruned = self.store.prune_seen(now - self.config.dedupe_hours * 3_600)
            if pruned:
                LOG.info("forgot %d event ids older than %.0f h", pruned, self.config.dedupe_hours)
            self.remove_expired_incoming(now)
            self._last_prune = now

    def remove_expired_incoming(self, now: float) -> list[str]:
        """The retention of ``incoming/``: remove the files read to their end and unchanged for
        ``incoming_retention_hours`` (their events are in the lake), and their offsets."""
        hours = self.config.incoming_retention_hours
        if hours is None:
            return []
        removed = []
        for source, path in expired_files(self.config.paths.incoming(), self.store.offsets(), now - hours * 3_600):
            path.unlink(missing_ok=True)
            removed.append(source)
        if removed:
            self.store.forget_offsets(removed)
            LOG.info("retention: removed %d incoming file(s) read to their end and older than %g h",
                     len(removed), hours)
        return removed

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Loop until ``stop`` is set (or, with ``once``, until nothing is left); returns the summary."""
        stop = stop or threading.Event()
        LOG.info("streaming %s (poll every %.1f s%s)", self.config.paths.incoming(), self.config.poll_interval,
                 ", until drained" if self.config.once else "")
        try:
            while not stop.is_set():
                report = self.step()
                if report is None:
                    if self.config.once:
                        break
                    self.metrics.export()
                    stop.wait(self.config.poll_interval)
                    continue
                self._log(report)
                self.metrics.export()
                self._maintain()
        finally:
            summary = self.metrics.export()
            self.close()
        return summary

    def _log(self, report: BatchReport) -> None:
        c = report.counters
        events = StreamMetrics.unique_events(c)
        fresh = sorted(s for _, s in report.freshness)
        p99 = f"{fresh[min(len(fresh) - 1, int(0.99 * len(fresh)))]:.2f} s" if fresh else "-"
        summary = self.metrics.summary()
        LOG.info(
            "batch %d%s: %d lines, %d events (%.0f ev/s in %.2f s), %d dead letters, pushed %d user / %d item rows, "
            "freshness p99 %s | total %d events, %.0f ev/s",
            report.batch, " (recovered)" if report.recovered else "", c.get("lines", 0), events,
            events / report.seconds if report.seconds > 0 else 0.0, report.seconds, c.get("dead_letters", 0),
            c.get("pushed.user_activity", 0), c.get("pushed.item_stats", 0), p99,
            summary["events"], summary["events_per_second"],
        )
