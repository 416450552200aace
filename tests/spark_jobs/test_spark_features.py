"""Feature views of the hand-built world (tests/spark_jobs/conftest.py), as the features job wrote them:
the offline-source contract (read back with pyarrow, as Feast reads it) and values computed by hand.

Snapshot days 03-09 (cutoff 03-10 00:00 UTC) and 03-10 (cutoff 03-11 00:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.features import BATCH_VIEWS, CREATED, EVENT_TIMESTAMP, NO_TIME_DAYS


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
