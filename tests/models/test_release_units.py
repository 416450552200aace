"""Hand-computed cases of the release builder's and the end-to-end evaluation's pure pieces."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from common.registry import ArtifactRegistry


def test_finalize_keeps_numeric_metrics_and_the_window(data_paths) -> None:
    from models.release import finalize_release, write_summary

    registry = ArtifactRegistry()
    staging = registry.stage("retail", "v7")
    (staging / "retrieval").mkdir()
    (staging / "retrieval" / "retrieval.json").write_text("{}")
    write_summary(staging, "indexes", {"collaborative_recall@100": 0.97, "queries": 500, "minimum": 0.95})
    write_summary(staging, "evaluation", {"recall@100": 0.4, "ndcg@10": 0.2, "holdout": ["a", "b"]})
    manifest = finalize_release("retail", "v7", (date(2025, 3, 1), date(2025, 3, 14)), {"ranker_auc": 0.7, "ok": True})
    assert manifest.training_window == ("2025-03-01", "2025-03-14")
    assert manifest.metrics == {"collaborative_recall@100": 0.97, "queries": 500, "minimum": 0.95, "recall@100": 0.4,
                                "ndcg@10": 0.2, "ranker_auc": 0.7}
    assert manifest.extra["summaries"]["evaluation"]["holdout"] == ["a", "b"]
    assert registry.verify("retail", "v7").ok and registry.current("retail") is None


def test_ranker_frame_types_nullable_columns() -> None:
    from models.release import ranker_frame

    raw = pd.DataFrame({"age": pd.array([30, None], dtype="Int64"), "has_arrears": [True, None],
                        "country": ["DE", None]})
    typed = ranker_frame(raw, ["age", "has_arrears"], ["country"])
    assert typed["age"].dtype == np.float32 and np.isnan(typed["age"].iloc[1]) and typed["age"].iloc[0] == 30
    assert typed["has_arrears"].tolist()[0] == 1.0 and np.isnan(typed["has_arrears"].iloc[1])
    assert typed["country"].tolist() == ["DE", ""]


def test_slate_ndcg_against_true_relevance() -> None:
    from experiments.position_bias import slate_ndcg

    frame = pd.DataFrame({"request_id": ["a", "a", "b", "b"]})
    gains = np.array([1.0, 0.0, 0.0, 0.5])
    # request a: perfect order (1.0); request b: the relevant item second: (0.5/log2 3) / 0.5 = 0.6309
    assert slate_ndcg(frame, np.array([2.0, 1.0, 2.0, 1.0]), gains) == pytest.approx((1.0 + 1 / np.log2(3)) / 2)


def test_history_rows_follow_the_user_history_view() -> None:
    from models.ranking.candidate_ranker import history_rows

    t = [datetime(2025, 3, 1, h, tzinfo=UTC) for h in (1, 2, 3)]
    before = pd.DataFrame({"user_id": ["u", "u", "u"], "item_id": ["a", "b", "a"],
                           "event_type": ["view", "view", "purchase"], "timestamp": t})
    catalog = pd.DataFrame({"item_id": ["a", "b"], "category": ["X>Y", "Z"]})
    row = history_rows(before, catalog, "retail")["u"]
    epoch = [int(x.timestamp()) for x in t]
    assert row["hist_item_ids"] == ["a", "b"]  # newest first: a was last touched at 03:00
    assert row["hist_item_last_ts"] == [epoch[2], epoch[1]]
    assert row["hist_item_views"] == [1, 1] and row["hist_item_purchases"] == [1, 0]
    cats = dict(zip(row["cat_keys"], zip(row["cat_views"], row["cat_purchases"], strict=True), strict=True))
    assert cats == {"X>Y": (1, 1), "Z": (1, 0)}


def test_ranked_lists_order_by_score_and_complete_from_the_fallback() -> None:
    from models.ranking.candidate_ranker import ranked_lists

    frame = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["a", "b", "c", "d"]})
    out = ranked_lists(frame, np.array([0.1, 0.9, 0.5, 0.3]), np.array(["u1", "u2"], dtype=object),
                       {"u1": np.array(["z"]), "u2": np.array(["d", "e", "f"])}, 3)
    assert out.tolist() == [["b", "c", "a"], ["d", "e", "f"]]


def test_candidate_recall_counts_each_relevant_item_once() -> None:
    from models.evaluation.data import ItemVocabulary, user_item_matrix
    from models.evaluation.pipeline import candidate_recall
    from models.evaluation.split import HeldOutTruth
    from models.retrieval.candidates import CandidateSet

    items = ItemVocabulary(np.array(["a", "b", "c", "d"], dtype=object))
    users = np.array(["u1", "u2"], dtype=object)
    relevant = user_item_matrix(pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "d", "c"],
                                              "weight": 1.0}), users, items, binary=True)
    truth = HeldOutTruth(users, items, relevant, relevant)
    ids = {"collaborative": np.array([["a", "b"], ["a", "b"]], dtype=object),
           "content": np.array([["a", "c"], ["d", "d"]], dtype=object),
           "popularity": np.array([["b", "d"], ["c", "a"]], dtype=object)}
    found = {"collaborative": np.array([2, 2]), "content": np.array([2, 0]), "popularity": np.array([1, 1])}
    candidates = CandidateSet(users, ids, {}, found, np.zeros((2, 1)), np.zeros((2, 1)))
    # u1: merged {a, b, c} (popularity found only b) -> 1 of {a, d}; u2: {a, b, c} -> 1 of {c}
    assert candidates.merged(0) == ["a", "b", "c"]
    assert candidate_recall(candidates, truth, np.array([0, 1])) == pytest.approx((0.5 + 1.0) / 2)


def test_summaries_round_trip(tmp_path) -> None:
    from models.release import read_summaries, write_summary

    write_summary(tmp_path, "ranker", {"metrics": {"auc": 0.61}, "window": [date(2025, 1, 1), "x"]})
    assert read_summaries(tmp_path) == {"ranker": {"metrics": {"auc": 0.61}, "window": ["2025-01-01", "x"]}}
    assert json.loads((tmp_path / "summary" / "ranker.json").read_text())["metrics"]["auc"] == 0.61


def _bootstrap_set(position: str) -> pd.DataFrame:
    """A ranking set as a domain without impressions builds it: no slot (``position`` absent or null)."""
    from models.ranking.synthetic import log_impressions, make_world

    world = make_world(60, n_numeric=2, n_categorical=1, seed=3)
    frame = log_impressions(world, 120, seed=4).rename(columns={"num_0": "price", "num_1": "x_cat_views",
                                                                "cat_0": "category_l1"})
    frame = frame.assign(user_id=frame["request_id"].map(lambda r: f"u{r % 30}"), item_id=frame["item"].astype(str),
                         request_id=frame["request_id"].astype(str),
                         event_timestamp=pd.Timestamp("2025-03-01", tz="UTC")
                         + pd.to_timedelta(frame["request_id"] * 600, "s"))
    return frame.drop(columns="position") if position == "absent" else frame.assign(position=None)


@pytest.mark.parametrize("position", ["absent", "all null"])
def test_train_ranker_into_takes_a_ranking_set_without_impressions(tmp_path, position: str) -> None:
    from common.registry import RANKER_DIR
    from models.ranking.config import RankerConfig
    from models.release import read_summaries, train_ranker_into

    frame = _bootstrap_set(position)
    source = "bootstrap: later interactions vs retrieved candidates"
    config = RankerConfig(epochs=1, deep_layers=(8,), structure="stacked")  # position correction on by default
    summary = train_ranker_into(tmp_path, frame, (date(2025, 3, 1), date(2025, 3, 2)), config, verbose=False,
                                ranking_data=source)
    assert summary["position_correction"] is False
    assert summary["ranking_data"] == source
    assert (summary["positives"], summary["negatives"]) == (int(frame["clicked"].sum()), int((frame["clicked"] == 0).sum()))
    assert summary["features"] == {"numeric": ["price", "x_cat_views"], "categorical": ["category_l1"]}
    assert read_summaries(tmp_path)[RANKER_DIR]["ranking_data"] == source
    assert summary["parity"]["agree"]


def test_data_problems_of_the_training_sets_are_data_errors(tmp_path) -> None:
    from common.errors import DataError
    from models.release import train_ranker_into, train_retrieval_into

    window = (date(2025, 3, 1), date(2025, 3, 2))
    frame = _bootstrap_set("absent")
    with pytest.raises(DataError, match=r"ranking set of 2025-03-01..2025-03-02 \(impressions\) is empty"):
        train_ranker_into(tmp_path, frame.head(0), window)
    with pytest.raises(DataError, match=r"\(bootstrap\) needs 0/1 labels of both classes: 0 positive, 1,200 negative"):
        train_ranker_into(tmp_path, frame.assign(clicked=0), window, ranking_data={"source": "bootstrap", "users": 30})
    with pytest.raises(DataError, match="none of the ranker's features"):
        train_ranker_into(tmp_path, frame[["request_id", "clicked"]], window)
    with pytest.raises(DataError, match="no positive interaction"):
        train_retrieval_into(tmp_path, pd.DataFrame(columns=["user_id", "item_id", "timestamp"]), pd.DataFrame(),
                             None, window)
    assert not (tmp_path / "ranker").exists()


def _write_source(paths, view: str, rows: list[dict]) -> None:
    target = paths.feature_source(view)
    target.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).assign(created=pd.Timestamp("2025-03-11", tz="UTC"))
    frame.to_parquet(target / "part-0.parquet", index=False)


def test_ranking_inputs_are_what_serving_would_have_read_at_the_moment(data_paths) -> None:
    from models.ranking.offline_features import history_of, ranking_inputs

    as_of = pd.Timestamp("2025-03-10", tz="UTC")  # a Monday, midnight
    day, next_day = as_of, as_of + pd.Timedelta(days=1)  # snapshot cutoffs: the 9th's and the 10th's
    _write_source(data_paths, "user_profile", [
        {"user_id": "u1", "event_timestamp": day, "purchase_count_30d": 3, "country": "DE"},
        {"user_id": "u1", "event_timestamp": next_day, "purchase_count_30d": 9, "country": "FR"},  # the future
        {"user_id": "u3", "event_timestamp": day, "purchase_count_30d": 1, "country": None}])
    _write_source(data_paths, "item_features", [
        {"item_id": "a", "event_timestamp": day - pd.Timedelta(days=1), "price": 5.0, "category_l1": "X"},
        {"item_id": "a", "event_timestamp": day, "price": 10.0, "category_l1": "X"},
        {"item_id": "a", "event_timestamp": next_day, "price": 99.0, "category_l1": "X"}])
    _write_source(data_paths, "user_history", [
        {"user_id": "u1", "event_timestamp": day, "hist_item_ids": ["a"], "hist_item_last_ts": [0],
         "hist_item_views": [4], "hist_item_purchases": [1], "hist_item_declines": [0], "cat_keys": ["X>Y"],
         "cat_views": [6], "cat_purchases": [1], "cat_last_ts": [0]}])
    fallback = {"u1": {"hist_item_ids": ["b"], "hist_item_views": [7]},  # the source has u1: not used
                "u3": {"hist_item_ids": ["b"], "hist_item_views": [7], "cat_keys": ["Z"], "cat_views": [7]}}
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "b", "a", "b"]})
    names = ["price", "category_l1", "purchase_count_30d", "country", "days_since_last_purchase",
             "x_item_views", "x_cat_views", "hour_of_day", "day_of_week", "device_type", "not_served"]
    histories = history_of(data_paths, ["u1", "u2", "u3"], as_of, fallback)
    frame, missing = ranking_inputs(pairs, names, pd.Series({"a": "X>Y", "b": "Z"}), histories, data_paths, as_of,
                                    devices={"u1": "iPhone", "u3": "desktop"})
    assert frame["price"].tolist() == [10.0, 0.0, 10.0, 0.0]  # the latest snapshot at the moment; unknown item: 0
    assert frame["category_l1"].tolist() == ["X", "", "X", ""]
    assert frame["purchase_count_30d"].tolist() == [3, 3, 0, 1]
    assert frame["country"].tolist() == ["DE", "DE", "", None]  # no row: default ""; a null attribute: unknown
    assert frame["days_since_last_purchase"].tolist()[2] == 365.0  # the online reader's default for it
    assert frame["x_item_views"].tolist() == [4.0, 0.0, 0.0, 7.0]  # u1 from the source, u3 from the lake rows
    assert frame["x_cat_views"].tolist() == [6.0, 0.0, 0.0, 7.0]
    assert frame["hour_of_day"].tolist() == [0] * 4 and frame["day_of_week"].tolist() == [0] * 4
    assert frame["device_type"].tolist() == ["ios", "ios", "other", "web"]  # u2's device is unknown
    assert missing == ["not_served"] and frame["not_served"].isna().all()


def test_last_devices_are_read_from_the_lake_before_the_moment(data_paths) -> None:
    from common.lake import write_events
    from models.ranking.offline_features import last_devices

    times = pd.to_datetime(["2025-03-09 10:00", "2025-03-09 12:00", "2025-03-10 08:00", "2025-03-09 09:00"], utc=True)
    events = pd.DataFrame({"event_id": ["e1", "e2", "e3", "e4"], "domain": "retail",
                           "user_id": ["r_u1", "r_u1", "r_u1", "r_u2"], "item_id": "r_i1", "event_type": "view",
                           "timestamp": times, "session_id": "s", "device": ["web", "ios", "android", "web"]})
    write_events(events, data_paths)
    as_of = pd.Timestamp("2025-03-10", tz="UTC")
    assert last_devices(data_paths, "retail", ["r_u1", "r_u3"], as_of) == {"r_u1": "ios"}  # not the later android
