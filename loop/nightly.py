"""Between two simulated days: land the day's events, then retrain and publish new releases.

- :func:`drain_stream` runs the streaming job over ``incoming/`` until it is drained: the events the
  service took in (and the impressions it logged) reach the raw lake and the online features.
- :func:`retrain` builds the night's releases for the logical date ``day``:

  - ``airflow``: the nightly DAG through Airflow (``orchestration.runner.run_nightly``): compaction,
    data quality, features, training sets, training, evaluation, the promotion gate, publish. A
    refused promotion or failed check is an outcome of the loop (the live release keeps serving);
  - ``fast``: the same Spark jobs and the release builder called directly in this process (one shared
    SparkSession, no Airflow), then the DAG's own evaluation of the live release and promotion gate
    (``orchestration.release_tasks``): a release the gate refuses is not published and the live one
    keeps serving, as in the DAG. Only the loop's first night (:func:`loop.simulate.prepare_world`,
    nothing live yet) publishes what it built without the gate, since the loop needs a release to start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from common.paths import DataPaths
from common.registry import ArtifactRegistry
from common.settings import env

RetrainMode = Literal["airflow", "fast", "none"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NightResult:
    day: str
    mode: str
    ok: bool
    seconds: float
    releases: dict[str, str | None]  # CURRENT per domain after the night
    changed: dict[str, bool]  # CURRENT moved this night
    failed_tasks: list[str] = field(default_factory=list)
    stream_events: int = 0
    gate: dict[str, dict[str, object]] = field(default_factory=dict)  # fast mode: the gate's decision per domain

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def drain_stream(paths: DataPaths) -> int:
    """The streaming job once over ``incoming/`` (files source, DirectRunner); returns events processed.
    The Feast definitions are registered first (idempotent): a fresh world has none yet."""
    from beam_jobs.job import FileStreamJob, StreamConfig
    from feature_repo.store import apply, get_store
    from orchestration.tasks import online_store

    for noisy in ("apache_beam", "feast", "absl", "beam_jobs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    online = online_store()
    apply(get_store(paths, online), paths)  # type: ignore[arg-type]
    summary = FileStreamJob(StreamConfig(paths, once=True, poll_interval=0.1, online=online,
                                         redis_url=env().redis_url)).run()
    return int(summary.get("events", 0))


def _free_version(registry: ArtifactRegistry, domain: str, day: date) -> str:
    """``YYYYMMDD``, or ``YYYYMMDD.N`` if that one was already built or staged."""
    from orchestration.staging import version_name

    for attempt in range(1, 100):
        version = version_name(day, attempt)
        if not registry.release_path(domain, version).exists() and not registry.staging_path(domain, version).exists():
            return version
    raise RuntimeError(f"{domain}: no free release version for {day}")


def gate_release(domain: str, version: str, day: date) -> dict[str, object]:
    """The DAG's ``evaluate`` (the live release re-evaluated on the candidate's held-out day) and
    ``promotion_gate`` on a finalized release: the decision, with ``promote`` and the ``reasons`` of a
    refusal."""
    from airflow.sdk.exceptions import AirflowFailException

    from orchestration.release_tasks import evaluate, promotion_gate

    try:
        return promotion_gate(domain, evaluate(domain, version, day.isoformat(), []))
    except AirflowFailException as err:  # how the gate (or the evaluation's data check) refuses
        return {"version": version, "promote": False, "reasons": [str(err)]}


def _fast_night(paths: DataPaths, day: date, domains: Sequence[str], training_days: int,
                compact_lookback_days: int, master: str, gate: bool,
                decisions: dict[str, dict[str, object]]) -> list[str]:
    """The nightly DAG's work without Airflow (see the module docstring): with ``gate``, each release is
    published only if the promotion gate passes it (its decision goes into ``decisions``). Returns the
    failed steps as the DAG's task ids (``<domain>.build_release`` / ``<domain>.promotion_gate``): those
    domains' live releases keep serving."""
    from models.release import ReleaseCheckFailed
    from orchestration.build import build_release
    from orchestration.tasks import materialize_day, plan
    from spark_jobs import compact, features, training_sets
    from spark_jobs.session import job_session

    night = plan(day.isoformat(), compact_lookback_days, training_days)
    # the caller's active session is reused and left running (tests share one); a new one is stopped
    with job_session("recsys-loop-nightly", master):
        for job, args in ((compact, night["compact_args"]), (features, night["features_args"])):
            if job.main(args) != 0:
                raise RuntimeError(f"{job.__name__} failed for {day}")
        materialize_day(day.isoformat())
        if training_sets.main(night["training_sets_args"]) != 0:
            raise RuntimeError(f"training sets failed for {day}")
        registry = ArtifactRegistry()
        failed = []
        for name in domains:
            try:
                built = build_release(name, day, days=training_days, version=_free_version(registry, name, day),
                                      paths=paths, registry=registry, master=master)
            except (ReleaseCheckFailed, ValueError) as err:
                log.warning("%s: no release for %s: %s", name, day, err)
                failed.append(f"{name}.build_release")
                continue
            if gate:
                decisions[name] = gate_release(name, built.version, day)
                if not decisions[name]["promote"]:
                    log.warning("%s: release %s refused by the promotion gate: %s", name, built.version,
                                decisions[name]["reasons"])
                    failed.append(f"{name}.promotion_gate")
                    continue
            registry.promote(name, built.version)
        return failed


def retrain(day: date, mode: RetrainMode, domains: Sequence[str], training_days: int = 7,
            compact_lookback_days: int = 2, airflow_home: Path | None = None, master: str = "local[2]",
            gate: bool = True) -> NightResult:
    """Drain the stream, then run the night of ``day`` in ``mode``; never raises for a refused release.
    ``gate=False`` (fast mode only) publishes every release built (the loop's first night)."""
    paths = DataPaths.default()
    registry = ArtifactRegistry()
    before = {d: registry.current(d) for d in domains}
    started = time.perf_counter()
    streamed = drain_stream(paths)
    ok, failed = True, []
    decisions: dict[str, dict[str, object]] = {}
    if mode == "airflow":
        from orchestration.runner import run_nightly

        report = run_nightly(day, airflow_home or paths.root / "airflow",
                             {"training_days": training_days, "compact_lookback_days": compact_lookback_days})
        ok = report.ok
        failed = [t.task_id for t in report.tasks if t.state not in ("success", "skipped")]
        if not ok:
            log.warning("nightly run of %s did not succeed: %s", day, failed)
    elif mode == "fast":
        failed = _fast_night(paths, day, domains, training_days, compact_lookback_days, master, gate, decisions)
        ok = not failed
    after = {d: registry.current(d) for d in domains}
    return NightResult(day.isoformat(), mode, ok, round(time.perf_counter() - started, 1), after,
                       {d: after[d] != before[d] for d in domains}, failed, streamed, decisions)
