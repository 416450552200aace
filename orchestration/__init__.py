"""Orchestration: the logic behind the Airflow DAGs of ``dags/`` (which only wire it together).

- ``settings`` / ``nightly.yaml``   schedules, windows, data-quality rules, promotion-gate tolerances
- ``plan``           the night's date ranges and Spark job arguments from the logical date and the lake
- ``quality``        data-quality checks of a domain's compacted day (pure checks + a lake reader)
- ``gate``           the promotion gate (pure)
- ``staging``        release versions per logical date, retry-safe staging
- ``tasks``          the shared tasks: plan, data quality, Feast materialization
- ``release_tasks``  the per-domain tasks: stage, index check, evaluation, gate, publish
- ``spark``          a ``SparkSubmitOperator`` per job of ``spark_jobs/``
- ``airflow_env``    a self-contained Airflow (home + SQLite DB) for local runs and tests
- ``runner``         run a DAG once through Airflow and report per-task wall times
- ``cli``            the ``recsys airflow`` Typer sub-app

Importing this package imports neither Airflow nor any heavy library.
"""
