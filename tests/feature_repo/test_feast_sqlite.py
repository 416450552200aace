"""apply -> materialize -> online read on the SQLite store, pushes, the on-demand view, history."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from common.features import ITEM_ID, USER_ACTIVITY, USER_ID, USER_PROFILE
from common.online_features import MAX_ITEMS, OnlineFeatures, default_value


def test_online_values_are_the_latest_offline_snapshot(sqlite_store, offline):
    reader = OnlineFeatures(sqlite_store)
    for user_id in offline.users:
        served = reader.user_features(user_id)
        assert served.found == {spec.name: True for spec in offline.user_specs}
        for spec in offline.user_specs:
            offline.assert_row_equal(served.values, offline.latest(spec.name, user_id), spec.names)
    items = reader.item_features(offline.items)
    for k, item_id in enumerate(offline.items):
        row = {name: column[k] for name, column in items.columns.items()}
        assert all(mask[k] for mask in items.found.values())
        for spec in offline.item_specs:
            offline.assert_row_equal(row, offline.latest(spec.name, item_id), spec.names)


def test_an_older_snapshot_is_not_served(sqlite_store, offline):
    served = OnlineFeatures(sqlite_store).user_features("r_u1").values
    for spec in offline.user_specs:
        old, new = offline.old[spec.name]["r_u1"], offline.new[spec.name]["r_u1"]
        changed = [n for n in spec.names if old[n] != new[n]]
        assert changed, spec.name  # the data set must be able to tell the snapshots apart
        offline.assert_row_equal(served, new, spec.names)
        assert not any(offline.same_value(served[name], old[name]) for name in changed), spec.name


def test_missing_entities_get_defaults_and_are_flagged(sqlite_store):
    reader = OnlineFeatures(sqlite_store)
    user = reader.user_features("r_nobody")
    assert not any(user.found.values())
    assert user.values["days_since_last_purchase"] == 365.0
    assert user.values["purchase_count_30d"] == 0 and user.values["top_categories"] == []
    assert user.values["country"] == "" and user.values["has_arrears"] is False
    assert default_value(USER_PROFILE, USER_PROFILE.fields[0]) == 0

    items = reader.item_features(["r_i2", "r_ghost", "r_i2"])
    assert items.item_ids == ["r_i2", "r_ghost", "r_i2"]
    assert items.found["item_features"].tolist() == [True, False, True]
    assert items.columns["price"].dtype == np.float32 and items.columns["price"][1] == 0.0
    assert items.columns["in_stock"].dtype == bool and items.columns["category"][1] == ""
    assert items.columns["popularity_7d"][0] == items.columns["popularity_7d"][2]
    assert reader.item_features([]).columns["price"].shape == (0,)
    with pytest.raises(ValueError):
        reader.item_features([f"i{k}" for k in range(MAX_ITEMS + 1)])


def test_push_updates_the_online_value(sqlite_store, offline):
    reader = OnlineFeatures(sqlite_store, item_cache_seconds=60)
    before = reader.item_features(["r_i1"]).columns["inventory"][0]
    row = dict(offline.new[USER_ACTIVITY.name]["r_u2"], session_depth=41, recent_item_ids=["r_i2", "r_i1"])
    row["event_timestamp"] = int(
        (offline.day2 + timedelta(hours=1)).timestamp()
    )  # epoch seconds are accepted
    assert reader.push_user_activity([row]) == 1
    served = reader.user_features("r_u2").values
    assert served["session_depth"] == 41 and served["recent_item_ids"] == ["r_i2", "r_i1"]
    assert served["last_event_ts"] == row["last_event_ts"]

    stats = dict(offline.new["item_stats"]["r_i1"], inventory=before + 7, in_stock=True)
    stats["event_timestamp"] = offline.day2 + timedelta(hours=1)
    assert reader.push_item_stats([stats]) == 1  # also drops r_i1 from this reader's cache
    assert reader.item_features(["r_i1"]).columns["inventory"][0] == before + 7
    with pytest.raises(KeyError, match="inventory"):
        reader.push_item_stats([{k: v for k, v in stats.items() if k != "inventory"}])


def test_item_cache_serves_repeated_reads_until_refresh(sqlite_store, offline):
    cached = OnlineFeatures(sqlite_store, item_cache_seconds=3600)
    writer = OnlineFeatures(sqlite_store)
    first = cached.item_features(["r_i2"]).columns["popularity_1d"][0]
    stats = dict(
        offline.new["item_stats"]["r_i2"],
        popularity_1d=first + 100,
        event_timestamp=offline.day2 + timedelta(hours=2),
    )
    writer.push_item_stats([stats])
    assert cached.item_features(["r_i2"]).columns["popularity_1d"][0] == first  # cached row
    cached.refresh()
    assert cached.item_features(["r_i2"]).columns["popularity_1d"][0] == first + 100


def test_ranking_service_with_request_context_through_feast(sqlite_store, offline):
    service = sqlite_store.get_feature_service("ranking_v1")
    response = sqlite_store.get_online_features(
        features=service,
        entity_rows=[{USER_ID: "b_u3", ITEM_ID: "b_i3", "request_ts": 1_717_201_800, "device": "iPad"}],
    ).to_dict()
    assert response["hour_of_day"] == [0] and response["day_of_week"] == [5]
    assert response["is_weekend"] == [True] and response["device_type"] == ["ios"]
    assert response["credit_score"] == [offline.latest("user_profile", "b_u3")["credit_score"]]
    assert response["category"] == [offline.latest("item_features", "b_i3")["category"]]


def test_point_in_time_join_reads_the_spark_style_directories(sqlite_store, offline):
    entity_df = pd.DataFrame(
        {
            USER_ID: ["r_u1", "r_u1"],
            "event_timestamp": [offline.day1 + timedelta(hours=1), offline.day2 + timedelta(hours=1)],
        }
    )
    frame = (
        sqlite_store.get_historical_features(entity_df=entity_df, features=["user_history:hist_item_ids"])
        .to_df()
        .sort_values("event_timestamp")
    )
    got = [list(v) for v in frame["hist_item_ids"]]
    assert got == [
        offline.old["user_history"]["r_u1"]["hist_item_ids"],
        offline.new["user_history"]["r_u1"]["hist_item_ids"],
    ]


def test_materialization_reads_in_entity_chunks_and_loads_the_same_rows(sqlite_store, offline) -> None:
    """One entity per chunk gives the rows one chunk of every entity gives: the latest per entity."""
    from feature_repo.store import latest_rows

    start, end = offline.day1 - timedelta(days=1), offline.day2 + timedelta(days=1)
    for view in sqlite_store.list_feature_views():
        key = view.join_keys[0]
        whole = list(latest_rows(view, start, end, chunk_entities=1_000_000))
        single = list(latest_rows(view, start, end, chunk_entities=1))
        assert len(whole) == 1 and len(single) == len(whole[0]) > 1, view.name
        joined = pd.concat(single, ignore_index=True)
        pd.testing.assert_frame_equal(joined.sort_values(key).reset_index(drop=True),
                                      whole[0].sort_values(key).reset_index(drop=True))
        assert joined[key].is_unique


def test_writers_share_the_ranges_without_overlap(sqlite_store, offline) -> None:
    """Two writers' parts of the chunks are disjoint and together the latest row of every entity."""
    from feature_repo.store import latest_rows

    start, end = offline.day1 - timedelta(days=1), offline.day2 + timedelta(days=1)
    for view in sqlite_store.list_feature_views():
        key = view.join_keys[0]
        (whole,) = latest_rows(view, start, end)
        parts = [pd.concat(latest_rows(view, start, end, part=k, parts=2), ignore_index=True) for k in range(2)]
        assert all(len(p) for p in parts), view.name  # the entities are split, not all given to one writer
        assert not set(parts[0][key]) & set(parts[1][key])
        pd.testing.assert_frame_equal(pd.concat(parts).sort_values(key).reset_index(drop=True),
                                      whole.sort_values(key).reset_index(drop=True))


def test_sqlite_takes_one_writer_and_says_so(sqlite_store, offline, monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_repo.store import materialize, writers_for

    assert writers_for(sqlite_store) == 1
    with pytest.raises(ValueError, match="takes one"):
        materialize(sqlite_store, offline.day1, offline.day2, writers=2)
    monkeypatch.setenv("RECSYS_MATERIALIZE_WRITERS", "2")
    with pytest.raises(ValueError, match="RECSYS_MATERIALIZE_WRITERS=2"):
        writers_for(sqlite_store)
