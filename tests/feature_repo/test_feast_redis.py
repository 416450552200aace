"""The same apply -> materialize -> read -> push round trip against a real redis-server."""

from __future__ import annotations

from datetime import timedelta

from common.online_features import OnlineFeatures
from common.paths import DataPaths
from feature_repo.store import apply, get_store, materialize


def test_redis_round_trip(offline, redis_url: str, tmp_path):
    store = get_store(DataPaths(tmp_path / "data"), online="redis", redis_url=redis_url)
    assert store.config.online_store.type == "redis"
    apply(store, offline.paths)
    materialize(store, offline.day1 - timedelta(days=1), offline.day2 + timedelta(days=1))

    reader = OnlineFeatures(store)
    for user_id in offline.users:
        served = reader.user_features(user_id)
        assert all(served.found.values())
        for spec in offline.user_specs:
            offline.assert_row_equal(served.values, offline.latest(spec.name, user_id), spec.names)
    items = reader.item_features([*offline.items, "r_ghost"])
    for spec in offline.item_specs:
        assert items.found[spec.name].tolist() == [True, True, True, False]  # Redis answers empty values
        for k, item_id in enumerate(offline.items):
            row = {name: column[k] for name, column in items.columns.items()}
            offline.assert_row_equal(row, offline.latest(spec.name, item_id), spec.names)
    assert items.columns["price"][3] == 0.0 and items.columns["category"][3] == ""

    stats = dict(offline.latest("item_stats", "b_i3"), impressions_1d=123_456)
    stats["event_timestamp"] = offline.day2 + timedelta(hours=3)
    reader.push_item_stats([stats])
    assert reader.item_features(["b_i3"]).columns["impressions_1d"].tolist() == [123_456]


def test_two_writer_processes_load_every_row(offline, tmp_path):
    """Materialization with two writer processes (one chunk of one entity at a time each) into an empty
    redis-server: every user's and item's latest row is served, and the rows counted are the entities."""
    from feature_repo.redis_server import local_redis

    with local_redis() as url:
        store = get_store(DataPaths(tmp_path / "data"), online="redis", redis_url=url)
        apply(store, offline.paths)
        rows = materialize(store, offline.day1 - timedelta(days=1), offline.day2 + timedelta(days=1),
                           chunk_entities=1, writers=2)
        reader = OnlineFeatures(store)
        for spec in offline.user_specs:
            assert rows[spec.name] == len(offline.users)
        for user_id in offline.users:
            served = reader.user_features(user_id)
            assert all(served.found.values()), user_id
            for spec in offline.user_specs:
                offline.assert_row_equal(served.values, offline.latest(spec.name, user_id), spec.names)
        for spec in offline.item_specs:
            assert rows[spec.name] == len(offline.items)
            assert reader.item_features(list(offline.items)).found[spec.name].all()
