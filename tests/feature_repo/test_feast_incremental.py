"""materialize_incremental: windows keyed by the logical date, first run from end - ttl, then onward."""

from __future__ import annotations

from datetime import timedelta

from common.features import BATCH_VIEWS
from common.online_features import OnlineFeatures
from common.paths import DataPaths
from feature_repo.store import apply, get_store, materialize_incremental


def test_incremental_runs_follow_the_logical_dates(offline, tmp_path):
    # a store of its own (registry + SQLite under tmp_path) over the shared offline sources
    paths = DataPaths(tmp_path / "data")
    store = get_store(paths)
    apply(store, offline.paths)
    first_end = offline.day1 + timedelta(hours=12)  # after the older snapshot, before the latest

    windows = materialize_incremental(store, first_end)
    assert windows == {s.name: (first_end - timedelta(days=s.ttl_days), first_end) for s in BATCH_VIEWS}
    reader = OnlineFeatures(store)
    offline.assert_row_equal(
        reader.user_features("r_u1").values, offline.old["user_profile"]["r_u1"], offline.user_specs[0].names
    )

    second_end = offline.day2 + timedelta(hours=12)
    assert materialize_incremental(store, second_end) == {
        s.name: (first_end, second_end) for s in BATCH_VIEWS
    }
    assert materialize_incremental(store, second_end) == {}  # a re-run of the same date does nothing
    for user_id in offline.users:  # b_u3 keeps its older row, the others move to the latest snapshot
        served = reader.user_features(user_id).values
        for spec in offline.user_specs:
            offline.assert_row_equal(served, offline.latest(spec.name, user_id), spec.names)
