"""
### Nightly retraining

For the run's logical date `D` (the day that just ended) and every writable domain of
`config/domains.yaml`:

1. **plan** the night's date ranges (compaction, features, training window) from `D` and the lake;
   it fails when no domain has data (a night never succeeds after doing nothing);
2. **compact_lake** (Spark): validate and deduplicate the raw events, dead-letter the bad ones;
3. **build_features** (Spark) and **materialize_features** (Feast, offline -> online);
4. **build_training_sets** (Spark, point-in-time correct);
5. **data_quality.&lt;domain&gt;**: row counts, schema, nulls, duplicates, freshness, volume against the
   previous days, dead-letter and unknown-item rates -- bad data stops that domain's release (and
   fails the run) without stopping the other domains; a domain with no data at all is skipped;
6. per domain: **stage_release** -> **train_retrieval** (Spark: two-tower + content towers) ->
   **check_indexes** (ScaNN recall against exact search) -> **train_ranker** (Spark: DCN-v2) ->
   **evaluate** (offline metrics of the new and the live release on the same held-out day `D`;
   the new release is finalized: checksummed manifest, not yet live) ->
   **promotion_gate** (refuses a regression beyond the tolerances or a release that does not verify
   or load) -> **publish** (atomic `CURRENT` switch; serving hot-swaps it).

Every task is keyed by `D` (never the wall clock), so retries and backfills are safe; bad data, a
job's data error and refused promotions fail without retrying and leave the live release serving.
Each domain's branch is independent all the way to publish. Settings (schedule,
windows, thresholds, tolerances, Spark connection): `orchestration/nightly.yaml`. Guide: `dags/README.md`.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, TaskGroup, dag, task

from common.domains import writable_domains
from orchestration.settings import load_settings
from orchestration.spark import spark_job
from orchestration.staging import ClearStagedPart

SETTINGS = load_settings()
DOMAINS = writable_domains()


@task(multiple_outputs=True)
def plan(ds: str | None = None, params: dict | None = None) -> dict:
    from orchestration.tasks import plan

    return plan(ds, params["compact_lookback_days"], params["training_days"])


@task
def data_quality(domain: str, ds: str | None = None) -> dict:
    from orchestration.tasks import check_quality

    return check_quality(domain, ds)


@task
def materialize_features(ds: str | None = None) -> dict:
    from orchestration.tasks import materialize_day

    return materialize_day(ds)


@task(multiple_outputs=True)
def stage_release(domain: str, window: list[str], ds: str | None = None) -> dict:
    from orchestration.release_tasks import stage_release

    return stage_release(domain, ds, window)


@task
def check_indexes(domain: str, version: str, ds: str | None = None) -> dict:
    from orchestration.release_tasks import check_indexes

    return check_indexes(domain, version, ds)


@task
def evaluate(domain: str, version: str, window: list[str], ds: str | None = None) -> dict:
    from orchestration.release_tasks import evaluate

    return evaluate(domain, version, ds, window)


@task
def promotion_gate(domain: str, evaluation: dict) -> dict:
    from orchestration.release_tasks import promotion_gate

    return promotion_gate(domain, evaluation)


@task
def publish(domain: str, decision: dict) -> dict:
    from orchestration.release_tasks import publish

    return publish(domain, decision["version"])


@dag(
    dag_id="nightly_retrain",
    schedule=CronDataIntervalTimetable(SETTINGS.nightly.schedule, timezone="UTC"),
    start_date=SETTINGS.nightly.start_date,
    catchup=False,
    max_active_runs=1,
    default_args=SETTINGS.defaults.default_args(),
    params={
        "compact_lookback_days": Param(SETTINGS.nightly.compact_lookback_days, type="integer", minimum=1),
        "training_days": Param(SETTINGS.nightly.training_days, type=["integer", "string"],
                               description='days of the training window, or "all"'),
    },
    tags=["recsys", "training", "nightly"],
    doc_md=__doc__,
)
def nightly_retrain() -> None:
    night = plan()
    compact = spark_job("compact_lake", "compact", night["compact_args"])
    with TaskGroup(group_id="data_quality"):
        checks = {name: data_quality.override(task_id=name)(name) for name in DOMAINS}
    features = spark_job("build_features", "features", night["features_args"])
    online = materialize_features()
    training_sets = spark_job("build_training_sets", "training_sets", night["training_sets_args"])
    compact >> features >> online >> training_sets

    for name in DOMAINS:
        compact >> checks[name]
        with TaskGroup(group_id=name):
            staged = stage_release(name, night["training_window"])
            retrieval = spark_job("train_retrieval", "train_retrieval", staged["retrieval_args"],
                                  pre_execute=ClearStagedPart("retrieval"))
            indexes = check_indexes(name, staged["version"])
            ranker = spark_job("train_ranker", "train_ranker", staged["ranker_args"], pre_execute=ClearStagedPart("ranker"))
            evaluation = evaluate(name, staged["version"], night["training_window"])
            decision = promotion_gate(name, evaluation)
            [checks[name], training_sets] >> staged
            retrieval >> indexes >> ranker >> evaluation
            publish(name, decision)


nightly_retrain()
