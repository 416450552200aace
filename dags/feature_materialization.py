"""
### Feature materialization

Every `materialization.every_minutes` (see `orchestration/nightly.yaml`), loads the batch feature
values that became true since the previous run from Feast's offline sources into the online store
serving reads (SQLite locally, Redis with `RECSYS_ONLINE_STORE=redis`).

Idempotent and keyed by the run's data interval: each view is materialized from where its last
materialization ended up to the end of the interval, so a retry or a re-run finds nothing left to do
and a late run catches up. The nightly retraining DAG loads each day's new snapshot itself, right
after the features are rebuilt. Logic: `orchestration.tasks.materialize_incremental`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DeltaDataIntervalTimetable, dag, task

from orchestration.settings import load_settings

SETTINGS = load_settings()


@dag(
    dag_id="feature_materialization",
    schedule=DeltaDataIntervalTimetable(SETTINGS.materialize_every),
    start_date=SETTINGS.nightly.start_date,
    catchup=False,
    max_active_runs=1,
    default_args=SETTINGS.defaults.default_args(),
    tags=["recsys", "features", "feast"],
    doc_md=__doc__,
)
def feature_materialization() -> None:
    @task
    def materialize(data_interval_end: datetime | None = None) -> dict:
        from orchestration.tasks import materialize_incremental

        return materialize_incremental(data_interval_end)

    materialize()


feature_materialization()
