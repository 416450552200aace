"""A self-contained Airflow for local runs and tests: its home and SQLite DB in one directory.

Airflow reads its configuration when it is first imported, so :func:`configure` must run before
anything imports ``airflow`` in the process. It points ``AIRFLOW_HOME`` and the metadata DB at
``home``, the DAG folder at ``dags/``, turns the example DAGs off, keeps parallelism low, and
defines the platform's Spark connection as ``local[*]`` unless the environment already defines it
(``AIRFLOW_CONN_RECSYS_SPARK``, the way to point the DAGs at a cluster). :func:`migrate` is
``airflow db migrate``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from common.paths import REPO_ROOT
from orchestration.settings import load_settings

DAGS_FOLDER = REPO_ROOT / "dags"
LOCAL_MASTER = "local[*]"


def spark_connection_variable() -> str:
    """The environment variable that defines the platform's Spark connection."""
    return f"AIRFLOW_CONN_{load_settings().spark.conn_id.upper()}"


def airflow_environment(home: Path, spark_master: str = LOCAL_MASTER) -> tuple[dict[str, str], dict[str, str]]:
    """``(forced, defaults)``: the variables an isolated Airflow in ``home`` needs, and those it sets only
    when the environment does not already set them."""
    home = Path(home).resolve()
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    forced = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # spark-submit (SparkSubmitOperator) comes from the virtualenv, like the Python that runs the jobs
        "PATH": path if venv_bin in path.split(os.pathsep) else os.pathsep.join([venv_bin, path]),
    }
    defaults = {
        spark_connection_variable(): json.dumps({"conn_type": "spark", "host": spark_master}),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return forced, defaults


def configure(home: Path, spark_master: str = LOCAL_MASTER) -> None:
    """Set the environment of an isolated Airflow in ``home`` (before ``airflow`` is imported)."""
    if "airflow" in sys.modules:
        from airflow import settings

        wanted = f"sqlite:///{Path(home).resolve() / 'airflow.db'}"
        if settings.SQL_ALCHEMY_CONN != wanted:
            raise RuntimeError(
                f"airflow was imported before its environment was set (DB {settings.SQL_ALCHEMY_CONN}); "
                "call orchestration.airflow_env.configure() first"
            )
    Path(home).mkdir(parents=True, exist_ok=True)
    forced, defaults = airflow_environment(home, spark_master)
    os.environ.update(forced)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def migrate() -> None:
    """``airflow db migrate`` in process (create or upgrade the metadata DB)."""
    from airflow.utils import db

    db.upgradedb()


def shell_exports(home: Path, spark_master: str = LOCAL_MASTER) -> str:
    """The same environment as shell lines (``eval "$(recsys airflow env)"``; ``scripts/airflow_env.sh``)."""
    forced, defaults = airflow_environment(home, spark_master)
    forced.pop("PATH")
    lines = [f"export {key}={_quote(value)}" for key, value in forced.items()]
    lines.append(f'export PATH={_quote(str(Path(sys.executable).parent))}:"$PATH"')
    lines += [f'[ -n "${{{key}:-}}" ] || export {key}={_quote(value)}' for key, value in defaults.items()]
    return "\n".join(lines)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
