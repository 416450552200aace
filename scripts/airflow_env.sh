#!/usr/bin/env bash
# Source this file to use the project's local Airflow from a shell (Airflow home and SQLite DB under
# data/airflow unless an argument names another home; DAGs from dags/; the Spark connection
# recsys_spark is local[*] unless AIRFLOW_CONN_RECSYS_SPARK is already set):
#
#   source scripts/airflow_env.sh [AIRFLOW_HOME]
#   airflow db migrate
#   airflow dags test nightly_retrain 2024-06-04
#
# The variables come from orchestration.airflow_env, the same settings the tests and `make run` use.
_recsys_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_recsys_home="${1:-${RECSYS_DATA_DIR:-$_recsys_root/data}/airflow}"
eval "$(cd "$_recsys_root" && .venv/bin/python -c 'from orchestration.cli import app; app()' env --airflow-home "$_recsys_home")"
export PYTHONPATH="$_recsys_root${PYTHONPATH:+:$PYTHONPATH}"
unset _recsys_root _recsys_home
