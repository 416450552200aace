"""Spark jobs as Airflow tasks: a ``SparkSubmitOperator`` per job of ``spark_jobs/``.

The master comes from the Airflow connection named in the settings (``spark.conn_id``); the local
default is ``{"conn_type": "spark", "host": "local[*]"}`` (see :mod:`orchestration.airflow_env`).
Pointing the nightly DAG at a cluster means changing that connection only (``yarn``,
``spark://host:7077``, ``k8s://...``); the jobs read ``--master`` from spark-submit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.paths import REPO_ROOT
from orchestration.settings import load_settings

if TYPE_CHECKING:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

SPARK_JOBS = REPO_ROOT / "spark_jobs"


def application(job: str) -> str:
    """The file spark-submit runs for a job of ``spark_jobs/`` (each has a ``main(argv)``)."""
    return str(SPARK_JOBS / f"{job}.py")


def spark_job(task_id: str, job: str, application_args: Any, **kwargs: Any) -> SparkSubmitOperator:
    """A ``SparkSubmitOperator`` running ``spark_jobs/<job>.py`` with ``application_args`` (a list, or an
    XComArg resolved at run time), through the platform's Spark connection."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    spark = load_settings().spark
    return SparkSubmitOperator(
        task_id=task_id,
        application=application(job),
        application_args=application_args,
        conn_id=spark.conn_id,
        driver_memory=spark.driver_memory,
        name=f"recsys-{job}",
        conf={"spark.log.level": "WARN"},  # the jobs print their own progress lines
        **kwargs,
    )
