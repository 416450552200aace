"""Spark jobs as Airflow tasks: a ``SparkSubmitOperator`` per job of ``spark_jobs/``.

The master comes from the Airflow connection named in the settings (``spark.conn_id``); the local
default is ``{"conn_type": "spark", "host": "local[*]"}`` (see :mod:`orchestration.airflow_env`).
Pointing the nightly DAG at a cluster means changing that connection only (``yarn``,
``spark://host:7077``, ``k8s://...``); the jobs read ``--master`` from spark-submit.

A job that exits with :data:`common.errors.EXIT_DATA_ERROR` (bad or insufficient data: the same
input fails the same way every time) fails its task at once, without retries; any other failure keeps
the task's retries (a lost executor, a full disk, an out-of-memory kill).
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowFailException

from common.errors import EXIT_DATA_ERROR
from common.paths import REPO_ROOT
from orchestration.settings import load_settings

SPARK_JOBS = REPO_ROOT / "spark_jobs"


def application(job: str) -> str:
    """The file spark-submit runs for a job of ``spark_jobs/`` (each has a ``main(argv)``)."""
    return str(SPARK_JOBS / f"{job}.py")


def exit_code(hook: Any, error: Exception) -> int | None:
    """The spark-submit process's exit code after a failed submit (None if it never ran)."""
    process = getattr(hook, "_submit_sp", None)
    code = getattr(process, "returncode", None)
    if code is None and f"Error code is: {EXIT_DATA_ERROR}." in str(error):
        return EXIT_DATA_ERROR
    return code


class SparkJobOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` that does not retry a job's data error (exit code 3)."""

    def execute(self, context: Any) -> None:
        try:
            super().execute(context)
        except AirflowException as err:
            if exit_code(self._hook, err) == EXIT_DATA_ERROR:
                raise AirflowFailException(
                    f"{self.task_id}: the job reported a data error (exit {EXIT_DATA_ERROR}; its log above says "
                    "which); retrying cannot fix it") from err
            raise


def spark_job(task_id: str, job: str, application_args: Any, **kwargs: Any) -> SparkJobOperator:
    """A Spark task running ``spark_jobs/<job>.py`` with ``application_args`` (a list, or an XComArg
    resolved at run time), through the platform's Spark connection."""
    spark = load_settings().spark
    return SparkJobOperator(
        task_id=task_id,
        application=application(job),
        application_args=application_args,
        conn_id=spark.conn_id,
        driver_memory=spark.driver_memory,
        name=f"recsys-{job}",
        conf={"spark.log.level": "WARN"},  # the jobs print their own progress lines
        **kwargs,
    )
