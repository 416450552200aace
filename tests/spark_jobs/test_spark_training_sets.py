"""Training sets: the point-in-time join on planted rows, and the sets the pipeline built from the world
(tests/spark_jobs/conftest.py) with labels, features and cross features computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest

from common.cross_features import CROSS_FEATURE_NAMES, NO_TIME_HOURS
from common.features import (
    CREATED,
    EVENT_TIMESTAMP,
    REQUEST_CONTEXT,
    USER_HISTORY,
    USER_ID,
    FeatureField,
    FeatureViewSpec,
)
from spark_jobs.point_in_time import as_of_join
from spark_jobs.training_sets import RANKING_VIEWS

TOY = FeatureViewSpec(name="toy", entity=USER_ID, description="", ttl_days=2,
                      fields=(FeatureField("value", "Int64", ""),))


def jan(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, minute, tzinfo=UTC)


def test_as_of_join_never_leaks_the_future(tiny_spark):
    features = tiny_spark.createDataFrame(
        [
            ("u1", jan(2), jan(2), 1),
            ("u1", jan(3), jan(3), 2),
            ("u1", jan(3), jan(4), 3),  # same event time, written later: wins
            ("u1", jan(5), jan(5), 99),  # planted future value
            ("u2", jan(1), jan(1), 7),
        ],
        f"user_id string, {EVENT_TIMESTAMP} timestamp, {CREATED} timestamp, value long",
    )
    examples = tiny_spark.createDataFrame(
        [
            ("a", "u1", jan(1, 12)),  # before any row
            ("b", "u1", jan(2)),  # exactly at a row's time: that row is already true
            ("c", "u1", jan(4, 23, 59)),  # the day before the planted value
            ("d", "u1", jan(5)),
            ("e", "u2", jan(4)),  # the only row is 3 days old: past the 2-day TTL
            ("f", "u2", jan(2, 12)),
            ("g", "u3", jan(3)),  # no rows at all
        ],
        "id string, user_id string, t timestamp",
    )
    joined = as_of_join(examples, features, TOY, "t", row_time_as="row_ts").collect()
    got = {r["id"]: r["value"] for r in joined}
    assert got == {"a": None, "b": 1, "c": 3, "d": 99, "e": None, "f": 7, "g": None}
    assert {r["id"]: r["row_ts"] for r in joined}["c"].replace(tzinfo=None) == datetime(2025, 1, 3)
    assert joined[0].__fields__ == ["id", "user_id", "t", "value", "row_ts"]


def test_as_of_join_refuses_clashing_columns(tiny_spark):
    examples = tiny_spark.createDataFrame([("u1", jan(1), 1)], "user_id string, t timestamp, value long")
    with pytest.raises(ValueError, match="value"):
        as_of_join(examples, examples, TOY, "t")


def _rows(path) -> dict[str, dict[str, Any]]:
    return {r["event_id"]: r for r in pq.read_table(path).to_pylist()}


def _ranking(pipeline) -> dict[str, dict[str, Any]]:
    return _rows(pipeline.training("retail", "ranking"))


def test_ranking_labels_and_columns(pipeline):
    rows = _ranking(pipeline)
    labels = {k: (r["request_id"], r["position"], r["clicked"], r["converted"]) for k, r in rows.items()}
    assert labels == {
        "e4": ("q1", 1, 1, 0),  # clicked (e6)
        "e5": ("q1", 2, 0, 0),  # r_i1 was bought on 03-01: before the impression, not a conversion
        "e16": ("q4", 3, 0, 0),  # r_i4 bought 25 h later: outside the 24 h window
        "e17": ("q5", 1, 0, 0),
        "e15": ("q2", 1, 0, 1),  # r_i4 bought 65 minutes later
    }
    columns = set(rows["e4"])
    scalar = {f.name for s in RANKING_VIEWS if s is not USER_HISTORY for f in s.fields if "Array" not in f.dtype}
    assert {*scalar, *REQUEST_CONTEXT.names, *CROSS_FEATURE_NAMES, EVENT_TIMESTAMP, "device"} <= columns
    assert not columns & {*USER_HISTORY.names, "top_categories", "recent_item_ids", "products_held"}
    assert len(pq.read_table(pipeline.training("banking", "ranking"))) == 0


def test_ranking_features_as_of_the_impression(pipeline):
    rows = _ranking(pipeline)
    early = rows["e4"]  # 03-09 09:00, before the first snapshot row (03-10 00:00): nulls and defaults
    assert early["lifetime_events"] is None and early["price"] is None and early["session_depth"] is None
    assert (early["x_item_interacted"], early["x_item_hours_since"], early["x_cat_views"]) == (0.0, NO_TIME_HOURS, 0.0)
    assert (early["hour_of_day"], early["day_of_week"], early["is_weekend"], early["device_type"]) == (9, 6, True, "web")

    later = rows["e17"]  # 03-10 10:00: the 03-09 snapshot, never the 03-10 one (true only from 03-11 00:00)
    assert later["lifetime_events"] == 5 and later["session_depth"] == 2
    assert (later["price"], later["popularity_30d"], later["in_stock"]) == (20.0, 2, False)
    assert later["ctr_7d"] == pytest.approx(2 / 21)
    hours = (24 * 60 + 58) / 60  # since 03-09 09:02
    assert later["x_item_interacted"] == 1.0 and later["x_item_views"] == 1.0 and later["x_item_purchases"] == 0.0
    assert later["x_item_hours_since"] == pytest.approx(hours, rel=1e-6)
    assert (later["x_cat_views"], later["x_cat_purchases"], later["x_cat_conversion"]) == (1.0, 0.0, 0.0)
    assert later["x_cat_view_share"] == pytest.approx(1 / 3)
    assert later["x_cat_hours_since"] == pytest.approx(hours, rel=1e-6)
    assert (later["hour_of_day"], later["day_of_week"], later["is_weekend"], later["device_type"]) == (10, 0, False, "android")

    unseen = rows["e15"]  # r_i4 / "Bags": nothing in the 03-09 history
    assert (unseen["x_item_interacted"], unseen["x_cat_views"], unseen["x_cat_hours_since"]) == (0.0, 0.0, NO_TIME_HOURS)
    assert unseen["device_type"] == "ios"


def test_retrieval_sets(pipeline):
    retail = _rows(pipeline.training("retail", "retrieval"))
    assert {k: (r["event_type"], r["weight"]) for k, r in retail.items()} == {
        "e6": ("click", 1.0), "e7": ("add_to_cart", 2.0), "e8": ("view", 1.0), "e9": ("view", 1.0),
        "e10": ("purchase", 4.0),
    }
    # the interactions alone: the towers build their histories from them and read no view's columns
    assert set(retail["e8"]) == {"event_id", "domain", "user_id", "item_id", "event_type", "weight", "timestamp"}
    banking = _rows(pipeline.training("banking", "retrieval"))
    assert {k: r["weight"] for k, r in banking.items()} == {"e13": 3.0, "e14": 4.0}
