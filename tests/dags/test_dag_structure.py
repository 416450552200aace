"""The task dependencies of each DAG, pinned: a change to the wiring must change this test too."""

from __future__ import annotations

from common.domains import writable_domains

SHARED = {
    ("plan", "compact_lake"),
    ("plan", "build_features"),
    ("plan", "build_training_sets"),
    ("compact_lake", "data_quality.retail"),
    ("compact_lake", "data_quality.banking"),
    ("compact_lake", "build_features"),
    ("build_features", "materialize_features"),
    ("materialize_features", "build_training_sets"),
}


def _domain_edges(d: str) -> set[tuple[str, str]]:
    return {
        ("build_training_sets", f"{d}.stage_release"),
        (f"data_quality.{d}", f"{d}.stage_release"),  # a domain's bad data stops its own branch only
        ("plan", f"{d}.stage_release"),
        ("plan", f"{d}.evaluate"),
        (f"{d}.stage_release", f"{d}.train_retrieval"),
        (f"{d}.stage_release", f"{d}.check_indexes"),
        (f"{d}.stage_release", f"{d}.train_ranker"),
        (f"{d}.stage_release", f"{d}.evaluate"),
        (f"{d}.train_retrieval", f"{d}.check_indexes"),
        (f"{d}.check_indexes", f"{d}.train_ranker"),
        (f"{d}.train_ranker", f"{d}.evaluate"),
        (f"{d}.evaluate", f"{d}.promotion_gate"),
        (f"{d}.promotion_gate", f"{d}.publish"),
    }


def _edges(dag) -> set[tuple[str, str]]:
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def test_the_domains_are_the_writable_ones() -> None:
    assert writable_domains() == ["retail", "banking"]


def test_nightly_retrain_dependencies(dagbag: tuple) -> None:
    dag = dagbag[0].dags["nightly_retrain"]
    assert _edges(dag) == SHARED | _domain_edges("retail") | _domain_edges("banking")


def test_nightly_retrain_spark_work_goes_through_spark_submit(dagbag: tuple) -> None:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    dag = dagbag[0].dags["nightly_retrain"]
    spark = {t.task_id: t for t in dag.tasks if isinstance(t, SparkSubmitOperator)}
    assert set(spark) == {"compact_lake", "build_features", "build_training_sets", "retail.train_retrieval",
                          "retail.train_ranker", "banking.train_retrieval", "banking.train_ranker"}
    for task in spark.values():
        assert task._conn_id == "recsys_spark"
        assert task.application.endswith(".py")


def test_a_domain_branch_does_not_depend_on_another_domain(dagbag: tuple) -> None:
    dag = dagbag[0].dags["nightly_retrain"]
    for d in writable_domains():
        upstream = dag.get_task(f"{d}.publish").get_flat_relative_ids(upstream=True)
        others = [o for o in writable_domains() if o != d]
        assert not [t for t in upstream if t.split(".")[0] in others or t.split(".")[-1] in others], d


def test_only_publish_switches_current_and_it_runs_after_the_gate(dagbag: tuple) -> None:
    dag = dagbag[0].dags["nightly_retrain"]
    for d in writable_domains():
        publish = dag.get_task(f"{d}.publish")
        assert publish.upstream_task_ids == {f"{d}.promotion_gate"}
        assert publish.trigger_rule == "all_success"
        assert f"{d}.publish" in dag.get_task("plan").get_flat_relative_ids(upstream=False)


def test_feature_materialization_is_one_task(dagbag: tuple) -> None:
    dag = dagbag[0].dags["feature_materialization"]
    assert [t.task_id for t in dag.tasks] == ["materialize"]
