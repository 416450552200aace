"""Feature views of the hand-built world (tests/spark_jobs/conftest.py), as the features job wrote them:
the offline-source contract (read back with pyarrow, as Feast reads it) and values computed by hand.

Snapshot days 03-09 (cutoff 03-10 00:00 UTC) and 03-10 (cutoff 03-11 00:00 UTC). Then sparse snapshot
days: the expansion helpers on tiny frames, and every view over a seeded four-month world computed on
sparse days equal to the same days of the dense (every-day) computation.
"""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame

from common.features import BATCH_VIEWS, CREATED, EVENT_TIMESTAMP, NO_TIME_DAYS
from spark_jobs import features
from spark_jobs import interactions as ix
from spark_jobs.features import build_feature_views
from spark_jobs.lake_io import (
    CATALOG_SCHEMA,
    EVENT_SCHEMA,
    USER_SCHEMA,
    read_catalog,
    read_compacted_events,
    read_users,
)
from spark_jobs.snapshots import snapshot_days


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> int:
    """Epoch seconds of a time in 2025 (UTC)."""
    return int(datetime(2025, month, day, hour, minute, tzinfo=UTC).timestamp())


C09, C10 = at(10, 0), at(11, 0)  # the two cutoffs = event_timestamp of the two snapshots
Rows = dict[tuple[str, int], dict[str, Any]]


_ARROW = {"Int64": pa.int64(), "Float32": pa.float32(), "Float64": pa.float64(), "String": pa.string(),
          "Bool": pa.bool_()}


def arrow_type(dtype: str) -> pa.DataType:
    return pa.list_(_ARROW[dtype[6:-1]]) if dtype.startswith("Array(") else _ARROW[dtype]


def _plain(t: pa.DataType) -> pa.DataType:
    """Parquet names list elements ``element``, pyarrow ``item``: compare element types only."""
    return pa.list_(t.value_type) if pa.types.is_list(t) else t


@pytest.fixture(scope="module")
def views(pipeline) -> dict[str, Rows]:
    """Every view as written by the features job, read back the way Feast reads it (pyarrow)."""
    out: dict[str, Rows] = {}
    for spec in BATCH_VIEWS:
        table = pq.read_table(pipeline.feature_source(spec.name))
        utc = pa.timestamp("us", tz="UTC")
        expected = [(spec.entity, pa.string()), (EVENT_TIMESTAMP, utc), (CREATED, utc),
                    *((f.name, arrow_type(f.dtype)) for f in spec.fields)]
        assert [(f.name, _plain(f.type)) for f in table.schema] == expected, spec.name
        rows = table.to_pylist()
        assert {r[CREATED] for r in rows} == {datetime(2025, 3, 11, tzinfo=UTC)}
        out[spec.name] = {(r[spec.entity], int(r[EVENT_TIMESTAMP].timestamp())): r for r in rows}
        assert len(out[spec.name]) == len(rows), f"{spec.name}: one row per entity per snapshot"
    return out


def test_entities_appear_once_they_exist(views):
    assert set(views["user_profile"]) == {("r_u1", C09), ("b_u1", C09), ("r_u1", C10), ("r_u2", C10), ("b_u1", C10)}
    assert set(views["user_history"]) == set(views["user_profile"]) == set(views["user_activity"])
    items_09 = {"r_i1", "r_i2", "r_i4", "r_i5", "b_p1"}  # r_i3 launches on 03-10 at noon
    expected = {(i, C09) for i in items_09} | {(i, C10) for i in items_09 | {"r_i3"}}
    assert set(views["item_features"]) == set(views["item_stats"]) == expected


def test_user_profile_retail(views):
    last = views["user_profile"][("r_u1", C10)]
    assert last["purchase_count_30d"] == 2 and last["active_days_30d"] == 3
    assert last["purchase_frequency_30d"] == pytest.approx(2 / 3)
    assert last["avg_basket_value"] == pytest.approx(75.0)
    assert last["lifetime_events"] == 9 and last["lifetime_purchases"] == 2 and last["declines_total"] == 1
    assert last["days_since_last_purchase"] == pytest.approx((8 * 60 + 55) / 1440)  # 15:05 -> midnight
    assert last["days_since_last_session"] == pytest.approx(8 / 24)  # 16:00 -> midnight; 03-11 is ignored
    assert last["tenure_days"] == pytest.approx(69.0)
    assert last["top_categories"] == ["Bags", "Shoes>Running", "Shoes>Trail"]  # tie broken by name
    assert last["top_category_scores"] == pytest.approx([6 / 15, 6 / 15, 3 / 15])
    assert (last["country"], last["age_band"], last["products_held"], last["num_products_held"]) == ("DE", "25-34", [], 0)

    before = views["user_profile"][("r_u1", C09)]
    assert (before["purchase_count_30d"], before["active_days_30d"], before["lifetime_events"]) == (1, 2, 5)
    assert before["avg_basket_value"] == pytest.approx(100.0)
    assert before["days_since_last_purchase"] == pytest.approx(8 + (13 * 60 + 50) / 1440)
    assert before["days_since_last_session"] == pytest.approx((14 * 60 + 58) / 1440)
    assert before["top_categories"] == ["Shoes>Running", "Shoes>Trail"]
    assert before["top_category_scores"] == pytest.approx([6 / 9, 3 / 9])


def test_user_profile_new_user_and_banking(views):
    new = views["user_profile"][("r_u2", C10)]
    assert new["lifetime_events"] == 0 and new["top_categories"] == []
    assert new["days_since_last_purchase"] == new["days_since_last_session"] == NO_TIME_DAYS
    assert new["tenure_days"] == pytest.approx(16 / 24)

    bank = views["user_profile"][("b_u1", C10)]
    assert (bank["applications_90d"], bank["approvals_total"], bank["purchase_count_30d"]) == (1, 1, 1)
    assert bank["products_held"] == ["b_p0", "b_p1"] and bank["num_products_held"] == 2
    assert (bank["age"], bank["credit_score"], bank["has_arrears"]) == (40, 700, False)
    assert bank["income"] == pytest.approx(50_000.0) and bank["dti"] == pytest.approx(0.3)
    assert bank["tenure_days"] == pytest.approx(366.0) and bank["avg_basket_value"] == 0.0
    assert bank["top_categories"] == ["Cards>Credit"] and bank["top_category_scores"] == pytest.approx([1.0])
    assert views["user_profile"][("b_u1", C09)]["products_held"] == ["b_p0"]


def test_account_features_and_nothing_else_read_the_account_events(views):
    """b_u1's card payments, salary credits and transfer (conftest: events 18-23) reach the account
    features of user_profile only: the item-based views and counts are as without them."""
    bank = views["user_profile"][("b_u1", C10)]
    assert bank["card_spend_30d"] == pytest.approx(590.0)
    assert bank["spend_share_travel_30d"] == pytest.approx(2 / 3) and bank["spend_share_home_30d"] == 0.0
    assert bank["large_transfers_90d"] == 1
    assert bank["days_since_salary_change"] == pytest.approx(1.75)  # 4000 -> 4600 on 03-09 06:00
    before = views["user_profile"][("b_u1", C09)]
    assert before["card_spend_30d"] == pytest.approx(290.0) and before["spend_share_travel_30d"] == pytest.approx(0.5)
    assert before["days_since_salary_change"] == pytest.approx(0.75)
    retail = views["user_profile"][("r_u1", C10)]
    assert (retail["card_spend_30d"], retail["large_transfers_90d"]) == (0.0, 0)
    assert retail["days_since_salary_change"] == NO_TIME_DAYS
    assert bank["lifetime_events"] == 2  # the application and the approval, not the account events
    assert not [key for key in views["item_features"] if "mcc_" in key[0] or "acct_" in key[0] or "xfer_" in key[0]]
    assert views["user_activity"][("b_u1", C10)]["recent_item_ids"] == ["b_p1"]


def test_user_activity_carries_the_account_state_the_stream_continues(views):
    """The batch initialisation of the streamed account state (beam_jobs/user_state.py): b_u1's salary
    credits of 4000 (03-01 06:00) and 4600 (03-09 06:00), a 12,000 transfer (03-09 15:00)."""
    bank = views["user_activity"][("b_u1", C10)]
    assert (bank["salary_credit"], bank["salary_credit_ts"]) == (pytest.approx(4600.0), at(9, 6))
    assert bank["salary_change_ts"] == at(9, 6)
    assert bank["large_transfer_ts"] == [at(9, 15)]
    assert bank["last_event_ts"] == at(10, 12)  # the approval: account events do not move it
    before = views["user_activity"][("b_u1", C09)]
    assert (before["salary_credit_ts"], before["salary_change_ts"]) == (at(9, 6), at(9, 6))
    retail = views["user_activity"][("r_u1", C10)]
    assert (retail["salary_credit"], retail["salary_credit_ts"], retail["salary_change_ts"]) == (0.0, 0, 0)
    assert retail["large_transfer_ts"] == []


def test_user_history(views):
    h = views["user_history"][("r_u1", C10)]
    assert h["hist_item_ids"] == ["r_i5", "r_i3", "r_i4", "r_i2", "r_i1"]
    assert h["hist_item_last_ts"] == [at(10, 16), at(10, 15, 30), at(10, 15, 5),
                                      at(9, 9, 2), at(1, 10, 10)]
    assert h["hist_item_views"] == [0, 1, 1, 1, 2]
    assert h["hist_item_purchases"] == [0, 0, 1, 0, 1]
    assert h["hist_item_declines"] == [1, 0, 0, 0, 0]
    assert h["cat_keys"] == ["Hats", "Bags", "Shoes>Trail", "Shoes>Running"]
    assert h["cat_views"] == [0, 2, 1, 2] and h["cat_purchases"] == [0, 1, 0, 1]
    assert h["cat_last_ts"] == [at(10, 16), at(10, 15, 30), at(9, 9, 2), at(1, 10, 10)]
    assert views["user_history"][("r_u1", C09)]["hist_item_ids"] == ["r_i2", "r_i1"]
    assert views["user_history"][("r_u2", C10)]["hist_item_ids"] == []


def test_user_activity(views):
    a = views["user_activity"][("r_u1", C10)]
    assert a["session_depth"] == 4  # s3: views of r_i4 and r_i3, the purchase, the decline
    assert (a["last_event_ts"], a["last_purchase_ts"]) == (at(10, 16), at(10, 15, 5))
    assert a["recent_item_ids"] == ["r_i5", "r_i3", "r_i4", "r_i2", "r_i1"]
    assert a["recent_category_keys"] == ["Hats", "Bags", "Shoes>Trail", "Shoes>Running"]
    assert a["recent_category_counts"] == [1, 2, 1, 1]
    new = views["user_activity"][("r_u2", C10)]
    assert (new["session_depth"], new["last_event_ts"], new["last_purchase_ts"], new["recent_item_ids"]) == (0, 0, 0, [])


def test_item_features(views):
    i1 = views["item_features"][("r_i1", C10)]
    assert (i1["price"], i1["price_bucket"], i1["category"], i1["category_l1"]) == (10.0, 0, "Shoes>Running", "Shoes")
    assert i1["launched_ts"] == at(1, 0, month=1)
    assert (i1["popularity_7d"], i1["popularity_30d"]) == (0, 3)
    assert i1["ctr_7d"] == pytest.approx(1 / 21) and i1["ctr_30d"] == pytest.approx(2 / 21)
    i2 = views["item_features"][("r_i2", C10)]
    assert (i2["price_bucket"], i2["popularity_7d"], i2["popularity_30d"]) == (2, 2, 2)
    assert i2["ctr_7d"] == pytest.approx((1 + 1) / (2 + 20))  # impressions on 03-09 and 03-10
    assert [views["item_features"][(i, C10)]["price_bucket"] for i in ("r_i3", "r_i4", "r_i5", "b_p1")] == [5, 7, 9, 0]
    assert views["item_features"][("b_p1", C10)]["category_l1"] == "Cards"
    assert views["item_features"][("r_i5", C10)]["popularity_30d"] == 0  # a decline is not positive


def test_item_stats(views):
    day9 = views["item_stats"][("r_i2", C09)]
    assert (day9["popularity_1d"], day9["impressions_1d"], day9["inventory"], day9["in_stock"]) == (2, 1, 0, False)
    assert day9["ctr_1d"] == pytest.approx(2 / 21)
    day10 = views["item_stats"][("r_i2", C10)]
    assert (day10["popularity_1d"], day10["impressions_1d"]) == (0, 1)
    assert day10["ctr_1d"] == pytest.approx(1 / 21)
    assert views["item_stats"][("r_i3", C10)]["popularity_1d"] == 1
    assert views["item_stats"][("r_i4", C10)]["in_stock"] is True


# --- sparse snapshot days -------------------------------------------------------------------------


def d(month: int, day: int) -> date:
    return date(2025, month, day)


def _rows(frame: DataFrame, *columns: str) -> list[tuple]:
    return sorted(tuple(row) for row in frame.select(*columns).collect())


SPARSE = [d(2, 25), d(3, 1), d(3, 3), d(3, 10), d(3, 31)]


def test_expand_reaches_only_the_snapshots_within_the_window(tiny_spark):
    daily = tiny_spark.createDataFrame(
        [("a", d(3, 1)), ("a", d(3, 5)), ("b", d(2, 20)), ("c", d(1, 1)), ("c", d(4, 2))], "k string, day date"
    )
    week = ix.expand(daily, SPARSE, horizon_days=7)
    assert _rows(week, "k", ix.DAY, ix.SNAPSHOT, ix.AGE_DAYS) == [
        ("a", d(3, 1), d(3, 1), 0), ("a", d(3, 1), d(3, 3), 2), ("a", d(3, 5), d(3, 10), 5),
        ("b", d(2, 20), d(2, 25), 5),
    ]
    month = ix.expand(daily, SPARSE, horizon_days=30)
    assert _rows(month.where("k = 'a' and day = '2025-03-01'"), ix.SNAPSHOT) == [(d(3, 1),), (d(3, 3),), (d(3, 10),)]
    # contiguous days: the same as repeating the row for each day of its window
    dense = ix.expand(daily.where("k = 'a'"), [d(3, 1) + timedelta(days=n) for n in range(5)], horizon_days=3)
    assert _rows(dense, ix.DAY, ix.SNAPSHOT) == [
        (d(3, 1), d(3, 1)), (d(3, 1), d(3, 2)), (d(3, 1), d(3, 3)), (d(3, 5), d(3, 5))]


def test_bucket_is_the_first_snapshot_counting_a_row(tiny_spark):
    daily = tiny_spark.createDataFrame(
        [("a", d(3, 1)), ("a", d(3, 5)), ("b", d(2, 20)), ("c", d(1, 1)), ("c", d(4, 2))], "k string, day date"
    )
    assert _rows(ix.bucket(daily, SPARSE), "k", ix.DAY, ix.SNAPSHOT) == [
        ("a", d(3, 1), d(3, 1)), ("a", d(3, 5), d(3, 10)), ("b", d(2, 20), d(2, 25)), ("c", d(1, 1), d(2, 25))]


def test_entity_snapshots_over_sparse_days(tiny_spark):
    daily = tiny_spark.createDataFrame([("a", d(3, 1)), ("f", d(4, 3))], "k string, day date")
    noon = datetime(2025, 3, 2, 12, tzinfo=UTC)
    table = tiny_spark.createDataFrame(
        [("a", datetime(2025, 3, 20, tzinfo=UTC)), ("c", noon), ("d", None), ("e", datetime(2025, 4, 5, tzinfo=UTC)),
         ("g", datetime(2025, 3, 31, 23, 59, tzinfo=UTC))],
        "k string, since timestamp",
    )
    got = _rows(ix.entity_snapshots(daily, table, "k", "since", SPARSE), "k", ix.SNAPSHOT)
    assert got == sorted(
        [("a", s) for s in SPARSE[1:]] + [("c", s) for s in SPARSE[2:]] + [("d", s) for s in SPARSE] + [("g", d(3, 31))]
    )


def test_states_reach_the_snapshots_after_their_change_points(tiny_spark):
    states = tiny_spark.createDataFrame(
        [("u", "p1", d(3, 1), 1), ("u", "p1", d(3, 10), 3), ("u", "p2", d(3, 3), 5), ("v", "p1", d(3, 31), 7)],
        "k string, part string, snapshot_date date, value int",
    )
    assert _rows(ix.at_changes(states, "k", "part"), "k", ix.SNAPSHOT, "part", "value") == [
        ("u", d(3, 1), "p1", 1), ("u", d(3, 3), "p1", 1), ("u", d(3, 3), "p2", 5),
        ("u", d(3, 10), "p1", 3), ("u", d(3, 10), "p2", 5), ("v", d(3, 31), "p1", 7)]
    universe = tiny_spark.createDataFrame([("u", s) for s in SPARSE] + [("w", d(3, 1))], "k string, snapshot_date date")
    totals = states.groupBy("k", ix.SNAPSHOT).sum("value").withColumnRenamed("sum(value)", "total")
    carried = ix.carry_forward(universe, "k", totals.where("k = 'u'"), states.where("part = 'p2'").drop("part"))
    assert _rows(carried, "k", ix.SNAPSHOT, "total", "value") == [
        ("u", d(2, 25), None, None), ("u", d(3, 1), 1, None), ("u", d(3, 3), 5, 5), ("u", d(3, 10), 3, 5),
        ("u", d(3, 31), 3, 5), ("w", d(3, 1), None, None)]


def _collected(views: features.FeatureViews) -> dict[str, dict[tuple[str, datetime], dict[str, Any]]]:
    out = {}
    for spec in BATCH_VIEWS:
        rows = [r.asDict(recursive=True) for r in views.frames[spec.name].collect()]
        out[spec.name] = {(r[spec.entity], r[EVENT_TIMESTAMP]): r for r in rows}
        assert len(out[spec.name]) == len(rows), f"{spec.name}: one row per entity per snapshot"
    views.release()
    return out


def _close(a: Any, b: Any) -> bool:
    """Equal, floats up to rounding (nested lists and dicts included)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _on(rows: dict[tuple[str, datetime], dict[str, Any]], cutoff: int) -> dict[str, dict[str, Any]]:
    """The rows of one snapshot (its cutoff in epoch seconds) by entity, without the timestamps."""
    return {key[0]: {f: v for f, v in row.items() if f not in (EVENT_TIMESTAMP, CREATED)}
            for key, row in rows.items() if int(key[1].replace(tzinfo=UTC).timestamp()) == cutoff}


def test_sparse_snapshots_of_the_hand_built_world(tiny_spark, pipeline, views):
    """Snapshot days 03-02 and 03-10 only: 03-10 is exactly the dense run's, 03-02 sees only 03-01."""
    events = read_compacted_events(tiny_spark, pipeline, d(3, 10))
    catalog, users = read_catalog(tiny_spark, pipeline), read_users(tiny_spark, pipeline)
    got = _collected(build_feature_views(events, catalog, users, [d(3, 2), d(3, 10)]))
    for spec in BATCH_VIEWS:
        written = {key[0]: {f: row[f] for f in (spec.entity, *spec.names)}
                   for key, row in views[spec.name].items() if key[1] == C10}
        assert _close(_on(got[spec.name], C10), written), spec.name
    c02 = at(3, 0)
    profile = _on(got["user_profile"], c02)
    assert set(profile) == {"r_u1", "b_u1"}  # r_u2 signs up on 03-10
    u1 = profile["r_u1"]
    assert (u1["lifetime_events"], u1["purchase_count_30d"], u1["active_days_30d"]) == (3, 1, 1)
    assert u1["days_since_last_session"] == pytest.approx(1 + (13 * 60 + 50) / 1440)  # 03-01 10:10 -> 03-03 00:00
    history = _on(got["user_history"], c02)["r_u1"]
    assert history["hist_item_ids"] == ["r_i1"] and history["hist_item_views"] == [2]
    items = _on(got["item_features"], c02)
    assert "r_i3" not in items and (items["r_i1"]["popularity_7d"], items["r_i1"]["popularity_30d"]) == (3, 3)


def seeded_world(spark, seed: int = 11) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Four months (2024-11-08 .. 2025-03-10) of random events of four retail and two banking users over
    six retail items and three banking products; some users and items appear mid-span."""
    rng = random.Random(seed)
    start = datetime(2024, 11, 8, tzinfo=UTC)
    kinds = {"retail": ["impression", "impression", "view", "click", "add_to_cart", "purchase", "decline"],
             "banking": ["impression", "view", "click", "application_start", "application_approved", "decline"]}
    items = {"retail": [f"r_i{n}" for n in range(1, 7)], "banking": [f"b_p{n}" for n in range(1, 4)]}
    users = {"retail": [f"r_u{n}" for n in range(1, 5)], "banking": ["b_u1", "b_u2"]}
    catalog = [
        {"item_id": item, "domain": dom, "title": item, "description": "", "price": 10.0 * n, "margin": 0.1,
         "inventory": n % 3, "category": None if item == "r_i6" else f"{dom}>{'AB'[n % 2]}",
         "launched_at": start + timedelta(days=40 * (n % 3), hours=n)}
        for dom, ids in items.items() for n, item in enumerate(ids)
    ]
    people = [
        {"user_id": user, "domain": dom, "signed_up_at": None if user == "r_u3" else start + timedelta(days=30 * n),
         **({"products_held": ["b_p9"]} if dom == "banking" else {"country": "DE"})}
        for dom, ids in users.items() for n, user in enumerate(ids)
    ]
    events = []
    for n in range(500):
        dom = rng.choice(["retail", "retail", "banking"])
        user, item, kind = rng.choice(users[dom]), rng.choice(items[dom]), rng.choice(kinds[dom])
        when = start + timedelta(days=rng.randrange(124) ** 2 / 124, minutes=rng.randrange(24 * 60))
        served = kind == "impression" or (kind == "click" and rng.random() < 0.7)
        events.append({
            "event_id": f"e{n}", "domain": dom, "user_id": user, "item_id": item, "event_type": kind, "timestamp": when,
            "session_id": None if rng.random() < 0.1 else f"{user}-{when:%m%d}-{rng.randrange(2)}",
            "request_id": f"q{n // 3}" if served else None, "position": 1 if served else None,
            "value": float(rng.randrange(1, 90)) if kind == "purchase" and rng.random() < 0.8 else None,
        })
    return (spark.createDataFrame(events, EVENT_SCHEMA), spark.createDataFrame(catalog, CATALOG_SCHEMA),
            spark.createDataFrame(people, USER_SCHEMA))


@pytest.fixture(scope="module")
def dense_world(tiny_spark):
    world = seeded_world(tiny_spark)
    days = snapshot_days(d(1, 1) - timedelta(days=53), d(3, 10))
    return world, _collected(build_feature_views(*world, days))


@pytest.mark.parametrize("days", [
    snapshot_days(date(2024, 11, 9), d(3, 10), daily_days=4, weekly_days=30),  # the rule: 4 daily, weekly, 28-day
    [date(2024, 11, 9), date(2024, 12, 7), d(1, 2), d(1, 3), d(1, 30), d(2, 27), d(3, 9), d(3, 10)],  # any days
])
def test_sparse_snapshots_equal_the_dense_computation_on_their_days(tiny_spark, dense_world, days):
    world, dense = dense_world
    sparse = _collected(build_feature_views(*world, days))
    for spec in BATCH_VIEWS:
        for day in days:
            cutoff = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + 86_400
            got, want = _on(sparse[spec.name], cutoff), _on(dense[spec.name], cutoff)
            assert got.keys() == want.keys() and (got or day < d(1, 1)), (spec.name, day)
            assert _close(got, want), (spec.name, day)


@pytest.mark.parametrize("argv", [
    ["--days", "3", "--snapshots", "2025-03-01"],  # one or the other
    ["--snapshots", "2025-03-01", "--daily-days", "2"],  # the rule goes with --days
    ["--snapshots", "2025-03-01,2025-03-11"],  # after --date
    ["--snapshots", "2025-02-01"],  # 37 days before --date: beyond every TTL
    ["--days", "0"],
])
def test_the_job_refuses_snapshot_days_it_cannot_compute(argv):
    with pytest.raises(SystemExit) as exit_info:
        features.main(["--date", "2025-03-10", *argv])
    assert exit_info.value.code == 2


def test_the_job_writes_the_sparse_rule_days(tiny_spark, pipeline, tmp_path):
    """``--days 40 --daily-days 2``: 01-30 (the span's first day), the Sundays between, 03-09 and 03-10."""
    shutil.copytree(pipeline.root / "lake", tmp_path / "lake")
    argv = ["--date", "2025-03-10", "--days", "40", "--daily-days", "2", "--data-dir", str(tmp_path)]
    assert features.main(argv) == 0
    written = pq.read_table(tmp_path / "features" / "user_history").column(EVENT_TIMESTAMP).to_pylist()
    expected = [date(2025, 1, 30), *(date(2025, 2, 2) + timedelta(days=7 * n) for n in range(5)), d(3, 9), d(3, 10)]
    assert snapshot_days(date(2025, 1, 30), d(3, 10), daily_days=2) == expected
    # r_u1 and b_u1 exist from the start (signed up in 2024/01-01), r_u2 only on 03-10
    assert sorted({t.date() - timedelta(days=1) for t in written}) == expected and len(written) == 2 * 8 + 1


def test_the_batch_features_command_takes_the_snapshot_options():
    from typer.testing import CliRunner

    from spark_jobs.cli import app

    runner = CliRunner()
    assert "--daily-days" in runner.invoke(app, ["features", "--help"]).output
    assert runner.invoke(app, ["features", "--date", "2030-01-01", "--days", "400", "--daily-days", "0"]).exit_code != 0
    both = ["features", "--date", "2030-01-01", "--days", "3", "--snapshots", "2029-12-31"]
    assert runner.invoke(app, both).exit_code == 2
