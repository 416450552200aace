"""The training launchers' Spark half on hand-built training sets (the TensorFlow half is covered by
``tests/models/test_release_e2e.py``, which runs both launchers end to end)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from common.paths import DataPaths
from spark_jobs import train_ranker, train_retrieval


def _row(n: int, domain: str, day: int, hour: int = 12) -> dict:
    return {"event_id": f"e{n}", "domain": domain, "user_id": f"{domain[0]}_u{n % 3}", "item_id": f"{domain[0]}_i{n}",
            "event_type": "view", "weight": 1.0, "timestamp": datetime(2025, 3, day, hour, tzinfo=UTC)}


def test_read_interactions_keeps_the_window_and_the_domain(spark, data_paths: DataPaths) -> None:
    rows = [_row(1, "retail", 3, 0), _row(2, "retail", 4), _row(3, "retail", 5, 23), _row(4, "retail", 6, 0),
            _row(5, "retail", 2, 23), _row(6, "banking", 4)]
    target = data_paths.training("retail", "retrieval")
    target.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(target / "part-0.parquet", index=False, coerce_timestamps="us")
    got = train_retrieval.read_interactions(spark, data_paths, "retail", date(2025, 3, 3), date(2025, 3, 5))
    # 03-03 00:00 and 03-05 23:00 are inside; 03-02 23:00 and 03-06 00:00 are not; banking never
    assert sorted(got["item_id"]) == ["r_i1", "r_i2", "r_i3"]
    assert list(got.columns) == train_retrieval.INTERACTION_COLUMNS
    assert str(got["timestamp"].dt.tz) == "UTC"
    assert got.set_index("item_id").loc["r_i3", "timestamp"] == pd.Timestamp("2025-03-05 23:00", tz="UTC")


def test_training_window_ends_with_the_logical_date() -> None:
    from models.release import training_window

    assert training_window(date(2025, 3, 10), 7) == (date(2025, 3, 4), date(2025, 3, 10))
    assert training_window(date(2025, 3, 10), 1) == (date(2025, 3, 10), date(2025, 3, 10))
    with pytest.raises(ValueError):
        training_window(date(2025, 3, 10), 0)


def test_ranker_launcher_refuses_a_missing_ranking_set_without_staging(data_paths: DataPaths, capsys) -> None:
    from common.registry import ArtifactRegistry

    argv = ["--domain", "retail", "--date", "2025-03-10", "--release", "v1", "--data-dir", str(data_paths.root)]
    with pytest.raises(SystemExit) as exit_info:
        train_ranker.main(argv)
    assert exit_info.value.code == 2
    assert "no ranking set" in capsys.readouterr().err
    assert not ArtifactRegistry().staging_path("retail", "v1").exists()


def test_ranker_launcher_bootstraps_a_window_without_impressions(spark, data_paths: DataPaths, capsys) -> None:
    from common.errors import EXIT_DATA_ERROR
    from spark_jobs.jobs import run_main

    target = data_paths.training("retail", "ranking")  # impressions of 03-01 only; the window is 03-08..03-10
    target.mkdir(parents=True)
    pd.DataFrame({"request_id": ["q1"], "user_id": ["r_u1"], "item_id": ["r_i1"], "position": [1], "clicked": [1],
                  "event_timestamp": [datetime(2025, 3, 1, 12, tzinfo=UTC)]}).to_parquet(
        target / "part-0.parquet", index=False, coerce_timestamps="us")
    argv = ["--domain", "retail", "--date", "2025-03-10", "--days", "3", "--release", "v1",
            "--data-dir", str(data_paths.root)]
    assert run_main(lambda: train_ranker.main(argv), "train-ranker") == EXIT_DATA_ERROR
    captured = capsys.readouterr()
    assert "retail has no impression in 2025-03-08..2025-03-10: training on the bootstrap ranking set" in captured.out
    assert "no retrievers staged" in captured.err  # the bootstrap needs train_retrieval's bundle


@pytest.mark.parametrize("launcher", [train_retrieval, train_ranker])
def test_launchers_document_their_arguments(launcher, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--domain", "--date", "--release", "--days", "--master", "--data-dir", "--epochs"):
        assert option in text


# ---- a domain without an impression log: the bootstrap ranking set ------------------------------
#
# 12 retail users, 3 product lines x 10 items; user u touches line u % 3 only. On day d (03-01..03-09)
# user u views item (d + u) % 10 of its line at hour 8 + u (and buys it on even days): nine distinct
# items each, so the last two (first seen on 03-08 and 03-09) are the user's positives and its request
# time is its 03-08 view. A 13th user views a single item and contributes nothing. The domains file is
# the shipped one with ``logs_impressions: false`` for retail. The lake holds the catalog, the users
# and the retrieval training set; the only feature view is item_features, with a price per item as of
# 03-08 00:00 and another as of 03-09 00:00.

LINES = ("Shoes>Running", "Bags>Leather", "Hats>Wool")
BOOTSTRAP_USERS = [f"r_u{u:02d}" for u in range(12)]
ITEMS = [f"r_i{line}{n}" for line in range(3) for n in range(10)]


def _bootstrap_events() -> pd.DataFrame:
    rows = []
    for u, user in enumerate(BOOTSTRAP_USERS):
        for day in range(1, 10):
            when, item = datetime(2025, 3, day, 8 + u, tzinfo=UTC), f"r_i{u % 3}{(day + u) % 10}"
            rows.append((user, item, "view", when))
            if day % 2 == 0:
                rows.append((user, item, "purchase", when + pd.Timedelta(minutes=5)))
    rows.append(("r_u99", "r_i00", "view", datetime(2025, 3, 5, 12, tzinfo=UTC)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    return frame.assign(event_id=[f"e{i}" for i in range(len(frame))], domain="retail", session_id="s", device="web")


def _item_features(spark):  # noqa: ANN001, ANN202  (a Spark DataFrame of the item_features view)
    from common.features import ITEM_FEATURES
    from spark_jobs.lake_io import view_schema

    schema = view_schema(ITEM_FEATURES)
    rows = [{"item_id": item, "event_timestamp": datetime(2025, 3, day, tzinfo=UTC),
             "created": datetime(2025, 3, 10, tzinfo=UTC), "price": 1.0 + i + (100.0 if day == 9 else 0.0),
             "category": LINES[int(item[3])], "category_l1": LINES[int(item[3])].split(">")[0]}
            for i, item in enumerate(ITEMS) for day in (8, 9)]
    return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)


@pytest.fixture(scope="module")
def no_impression_world(spark, tmp_path_factory: pytest.TempPathFactory):
    """The world above, with a staged release ``v1`` holding its retrievers (train_retrieval, one epoch)."""
    import yaml

    from common.features import ITEM_FEATURES
    from common.lake import write_catalog, write_users
    from models.retrieval.data import implicit_interactions
    from spark_jobs.lake_io import write_view

    root = tmp_path_factory.mktemp("bootstrap")
    config = yaml.safe_load((Path(__file__).parents[2] / "config" / "domains.yaml").read_text())
    config["domains"]["retail"]["logs_impressions"] = False
    (root / "domains.yaml").write_text(yaml.safe_dump(config))
    paths = DataPaths(root / "data")
    old = datetime(2025, 1, 1, tzinfo=UTC)
    write_catalog(pd.DataFrame([
        {"item_id": item, "domain": "retail", "title": item, "description": LINES[int(item[3])],
         "category": LINES[int(item[3])], "price": 10.0, "margin": 0.2, "inventory": 5, "launched_at": old}
        for item in ITEMS]), paths, "retail")
    write_users(pd.DataFrame({"user_id": [*BOOTSTRAP_USERS, "r_u99"], "domain": "retail", "signed_up_at": old,
                              "country": ["DE", "FR"] * 6 + ["DE"], "age_band": "25-34"}), paths, "retail")
    events = _bootstrap_events()
    target = paths.training("retail", "retrieval")
    target.mkdir(parents=True)
    implicit_interactions(events, "retail").assign(domain="retail", event_id=events["event_id"]).to_parquet(
        target / "part-0.parquet", index=False, coerce_timestamps="us")
    write_view(_item_features(spark), paths, ITEM_FEATURES)
    window = ["--domain", "retail", "--date", "2025-03-09", "--days", "9", "--data-dir", str(paths.root)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECSYS_ARTIFACTS_DIR", str(root / "artifacts"))
        assert train_retrieval.main([*window, "--release", "v1", "--epochs", "1", "--quiet"]) == 0
    return root, paths, window


@pytest.fixture
def no_impressions(no_impression_world, monkeypatch: pytest.MonkeyPatch) -> tuple[DataPaths, list[str]]:
    """The world's data paths and window arguments, with its domains file and artifacts root in force."""
    root, paths, window = no_impression_world
    monkeypatch.setenv("RECSYS_DOMAINS_FILE", str(root / "domains.yaml"))
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(root / "artifacts"))
    return paths, window


def test_ranker_bootstraps_without_impressions_into_the_staged_release(no_impressions, capsys) -> None:
    import json

    from common.registry import RANKER_DIR, ArtifactRegistry
    from models.ranking.export import load_scorer

    _, window = no_impressions
    assert train_ranker.main([*window, "--release", "v1", "--epochs", "1", "--quiet"]) == 0
    assert "bootstrap ranking set: 12 users, 24 positives, 120 negatives" in capsys.readouterr().out
    release = ArtifactRegistry().staging_path("retail", "v1")
    summary = json.loads((release / "summary" / "ranker.json").read_text())
    data = summary["ranking_data"]
    assert data["source"] == "bootstrap" and data["users"] == 12 and data["positives"] == 24
    assert data["retrieved_negatives"] == 24 * 4 and data["random_negatives"] == 24
    assert data["converted"] == 12  # every user bought its 03-08 item that day, not its 03-09 one
    assert summary["train_rows"] + summary["valid_rows"] == 24 * 6
    assert "position" not in load_scorer(release / RANKER_DIR, "saved_model").input_names


def test_bootstrap_examples_carry_the_point_in_time_features(spark, no_impressions) -> None:
    from common.registry import ArtifactRegistry
    from models.ranking.config import RankerConfig
    from spark_jobs.bootstrap_ranking import bootstrap_ranking_set

    paths, _ = no_impressions
    retrieval = ArtifactRegistry().staging_path("retail", "v1") / "retrieval"
    columns = [*train_ranker.KEPT, *RankerConfig().features]
    frame = bootstrap_ranking_set(spark, paths, "retail", date(2025, 3, 1), date(2025, 3, 9), retrieval, columns).frame
    assert "position" not in frame and len(frame) == 24 * 6
    times = frame.groupby("user_id")["event_timestamp"].agg(["min", "max"])
    assert (times["min"] == times["max"]).all()
    assert times["min"].to_dict() == {u: pd.Timestamp(2025, 3, 8, 8 + i, tz="UTC") for i, u in enumerate(BOOTSTRAP_USERS)}
    # the prices as of 03-08 (the row of 03-08 00:00, not the one of 03-09 00:00), and request context
    assert frame["price"].tolist() == [1.0 + ITEMS.index(item) for item in frame["item_id"]]
    assert frame["hour_of_day"].tolist() == [t.hour for t in frame["event_timestamp"]]
    assert frame["x_item_interacted"].eq(0).all()  # no user_history view: no history match


def test_bootstrap_without_a_user_with_two_items_is_a_data_error(no_impressions, capsys) -> None:
    from common.errors import EXIT_DATA_ERROR
    from spark_jobs.jobs import run_main

    _, window = no_impressions
    one_day = [*window[:4], "--days", "1", *window[6:], "--release", "v1"]  # 03-09: one item per user
    assert run_main(lambda: train_ranker.main(one_day), "train-ranker") == EXIT_DATA_ERROR
    assert "no retail user has two distinct items" in capsys.readouterr().err


def test_bootstrap_needs_the_staged_retrievers(no_impressions, capsys) -> None:
    from common.errors import EXIT_DATA_ERROR
    from common.registry import ArtifactRegistry
    from spark_jobs.jobs import run_main

    _, window = no_impressions
    assert run_main(lambda: train_ranker.main([*window, "--release", "v-none"]), "train-ranker") == EXIT_DATA_ERROR
    assert "no retrievers staged" in capsys.readouterr().err
    assert not ArtifactRegistry().staging_path("retail", "v-none").exists()


def test_a_night_trains_the_live_release_structure_only(tmp_path, monkeypatch) -> None:
    from common.registry import RANKER_DIR, ArtifactRegistry
    from models.release import write_summary
    from spark_jobs.train_ranker import structure_of

    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path))
    registry = ArtifactRegistry()
    assert structure_of("retail", "live") is None  # nothing live: both are compared
    staging = registry.stage("retail", "v1")
    write_summary(staging, RANKER_DIR, {"structure": "parallel"})
    registry.finalize("retail", "v1", training_window=("2025-03-01", "2025-03-02"), metrics={})
    registry.promote("retail", "v1")
    assert structure_of("retail", "live") == "parallel"
    assert structure_of("retail", "both") is None and structure_of("retail", "stacked") == "stacked"
