"""Run a DAG of ``dags/`` once through Airflow (``dag.test()``: no scheduler, tasks run in process).

This is what ``recsys airflow nightly`` and ``make run`` call, and what the end-to-end tests use.
:func:`orchestration.airflow_env.configure` must have set the environment before ``airflow`` is
imported; :func:`run_dag` then migrates the metadata DB, parses the DAG folder, runs the DAG for a
logical date and reports every task's state and wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from common.paths import DataPaths
from orchestration.airflow_env import DAGS_FOLDER, configure, migrate


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    state: str
    seconds: float
    tries: int


@dataclass(frozen=True)
class RunReport:
    dag_id: str
    logical_date: datetime
    state: str
    seconds: float
    tasks: tuple[TaskResult, ...]

    @property
    def ok(self) -> bool:
        """The run succeeded AND did something: a run with no task ran nothing (never a success)."""
        return self.state == "success" and any(t.state == "success" for t in self.tasks)

    def state_of(self, task_id: str) -> str:
        return next(t.state for t in self.tasks if t.task_id == task_id)

    def table(self) -> str:
        """Per-task wall time as a Markdown table, in the order the tasks ran."""
        lines = ["| task | state | wall time (s) | tries |", "|---|---|---:|---:|"]
        lines += [f"| {t.task_id} | {t.state} | {t.seconds:.1f} | {t.tries} |" for t in self.tasks]
        lines.append(f"| **{self.dag_id} ({self.logical_date.date()})** | **{self.state}** | **{self.seconds:.1f}** | |")
        if not any(t.state == "success" for t in self.tasks):
            lines.append(f"\nno task of {self.dag_id} ran for {self.logical_date.date()}: nothing was done")
        return "\n".join(lines)


class NightRefused(ValueError):
    """A DAG run that would do nothing (a logical date before the DAG's start date)."""


def load_dag(dag_id: str) -> Any:
    """Parse the DAG folder and return one DAG (raises with the import errors if it does not load)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"the DAG folder has import errors: {bag.import_errors}")
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {DAGS_FOLDER} (found {sorted(bag.dags)})")
    return dag


def _task_results(run: Any) -> tuple[TaskResult, ...]:
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = run.get_task_instances(session=session)
        rows = [
            (ti.start_date or datetime.max.replace(tzinfo=UTC), TaskResult(
                ti.task_id, str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                float(ti.duration or 0.0), int(ti.try_number or 0),
            ))
            for ti in instances
        ]
    return tuple(result for _, result in sorted(rows, key=lambda row: (row[0], row[1].task_id)))


def run_dag(
    dag_id: str, logical_date: datetime, conf: dict[str, Any] | None = None, mark_success: str | None = None
) -> RunReport:
    """Run one DagRun of ``dag_id`` with ``dag.test()``; ``mark_success`` is a regex of task ids to mark
    successful without running them."""
    migrate()
    dag = load_dag(dag_id)
    if dag.start_date is not None and logical_date < dag.start_date:
        raise NightRefused(
            f"{logical_date.date()} is before {dag_id}'s start_date {dag.start_date.date()}: Airflow would run no "
            "task. Move nightly.start_date in orchestration/nightly.yaml ($RECSYS_ORCHESTRATION_FILE) earlier")
    started = time.perf_counter()
    run = dag.test(logical_date=logical_date, run_conf=conf, mark_success_pattern=mark_success)
    seconds = time.perf_counter() - started
    state = str(run.state.value if hasattr(run.state, "value") else run.state)
    return RunReport(dag_id, logical_date, state, seconds, _task_results(run))


def latest_lake_day(paths: DataPaths, today: date | None = None) -> date:
    """The newest day with raw events in the lake that has ended (before ``today``, UTC): the default
    logical date of a night. Today's partition is still filling (live events, served impressions); a
    lake of imported or generated history ends before it."""
    today = today or datetime.now(UTC).date()
    days = [d for d in (p.name.split("=", 1)[1] for p in paths.events.glob("domain=*/date=*")) if d < today.isoformat()]
    if not days:
        raise FileNotFoundError(f"no events before {today} in {paths.events}: generate or import data first")
    return date.fromisoformat(max(days))


def run_nightly(
    day: date | None = None, airflow_home: Path | None = None, conf: dict[str, Any] | None = None
) -> RunReport:
    """Run the nightly retraining DAG once through Airflow for ``day`` (default: the lake's newest day).

    The Airflow home (metadata DB, logs) defaults to ``<data root>/airflow``.
    """
    paths = DataPaths.default()
    configure(airflow_home or paths.root / "airflow")
    day = day or latest_lake_day(paths)
    return run_dag("nightly_retrain", datetime(day.year, day.month, day.day, tzinfo=UTC), conf)
