"""Deterministic failures fail a task at once; nothing succeeds after doing nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.errors import EXIT_DATA_ERROR, DataError
from common.paths import DataPaths


def _spark_task(script: Path):  # noqa: ANN202
    from orchestration.spark import SparkJobOperator

    return SparkJobOperator(task_id="job", application=str(script), conn_id="recsys_spark", name="recsys-test")


@pytest.mark.parametrize(("code", "retried"), [(EXIT_DATA_ERROR, False), (1, True)])
def test_a_spark_job_data_error_is_not_retried_other_failures_are(
    airflow_db: Path, tmp_path: Path, code: int, retried: bool
) -> None:
    from airflow.exceptions import AirflowException
    from airflow.sdk.exceptions import AirflowFailException

    script = tmp_path / "job.py"
    script.write_text(f"import sys\nprint('[job] the window is empty', file=sys.stderr)\nsys.exit({code})\n")
    with pytest.raises(AirflowException) as caught:
        _spark_task(script).execute({})
    assert isinstance(caught.value, AirflowFailException) is not retried


def test_run_main_turns_a_data_error_into_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    from spark_jobs.jobs import run_main

    def main() -> int:
        raise DataError("no positive interaction in the window")

    assert run_main(main, "train") == EXIT_DATA_ERROR
    assert "data error (not retryable): no positive interaction" in capsys.readouterr().err


def test_python_tasks_fail_fast_on_a_data_error() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from orchestration.tasks import fails_fast

    @fails_fast
    def task() -> None:
        raise DataError("the domain has no events")

    with pytest.raises(AirflowFailException, match="the domain has no events"):
        task()


def test_a_night_with_no_domain_data_fails_instead_of_doing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from orchestration.tasks import plan

    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    DataPaths.default().events.mkdir(parents=True)
    with pytest.raises(AirflowFailException, match="no writable domain .* has events"):
        plan("2024-03-12", 3, 14)


def test_a_night_before_the_start_date_is_refused_loudly(airflow_db: Path) -> None:
    from orchestration.runner import NightRefused, run_dag

    with pytest.raises(NightRefused, match="before nightly_retrain's start_date"):
        run_dag("nightly_retrain", datetime(1999, 12, 31, tzinfo=UTC))


def test_a_run_where_no_task_ran_is_not_ok() -> None:
    from orchestration.runner import RunReport, TaskResult

    empty = RunReport("nightly_retrain", datetime(2016, 10, 16, tzinfo=UTC), "success", 0.1, ())
    assert not empty.ok and "nothing was done" in empty.table()
    skipped = RunReport("nightly_retrain", datetime(2016, 10, 16, tzinfo=UTC), "success", 0.1,
                        (TaskResult("plan", "skipped", 0.0, 1),))
    assert not skipped.ok
    assert RunReport("d", empty.logical_date, "success", 1.0, (TaskResult("plan", "success", 1.0, 1),)).ok


def test_recsys_airflow_nightly_exits_2_for_a_date_before_the_start(airflow_db: Path, airflow_home: Path) -> None:
    from typer.testing import CliRunner

    from orchestration.cli import app

    result = CliRunner().invoke(app, ["nightly", "--date", "1996-03-29", "--airflow-home", str(airflow_home)])
    assert result.exit_code == 2, result.output
    assert "start_date" in result.output


def test_the_default_night_is_the_newest_lake_day_that_has_ended(tmp_path: Path) -> None:
    from datetime import date

    from orchestration.runner import latest_lake_day

    paths = DataPaths(tmp_path / "data")
    for domain, day in (("films", "2016-10-16"), ("films", "2026-12-06"), ("retail", "2016-10-17")):
        paths.events_partition(domain, day).mkdir(parents=True)
    # today's partition (served impressions, live events) is still filling: the night is for the day before
    assert latest_lake_day(paths, today=date(2026, 12, 6)) == date(2016, 10, 17)
    assert latest_lake_day(paths, today=date(2026, 12, 7)) == date(2026, 12, 6)
    with pytest.raises(FileNotFoundError, match="no events before 2016-10-16"):
        latest_lake_day(paths, today=date(2016, 10, 16))


def test_the_release_tasks_that_read_data_fail_fast() -> None:
    from orchestration import release_tasks, tasks

    for task in (tasks.plan, release_tasks.check_indexes, release_tasks.evaluate):
        assert hasattr(task, "__wrapped__"), task.__name__  # wrapped by fails_fast
