"""Input preparation of the retrieval models: histories, taxonomy levels, profile encoding, weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.retrieval.data import (
    UserFeatureSpec,
    category_levels,
    implicit_interactions,
    item_content_inputs,
    latest_histories,
    pad_histories,
    sampling_probabilities,
    with_histories,
)


def _ts(hour: int) -> pd.Timestamp:
    return pd.Timestamp("2024-05-01", tz="UTC") + pd.Timedelta(hours=hour)


def test_histories_hold_previous_distinct_items_newest_first_without_the_current_item() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2"],
            "item_id": ["a", "b", "a", "c", "a"],
            "timestamp": [_ts(0), _ts(1), _ts(2), _ts(3), _ts(0)],
            "weight": 1.0,
        }
    ).sample(frac=1.0, random_state=3)  # input order must not matter
    out = with_histories(frame, length=2)
    u1 = out[out["user_id"] == "u1"]["history"].tolist()
    assert u1 == [[], ["a"], ["b"], ["a", "b"]]
    assert out[out["user_id"] == "u2"]["history"].tolist() == [[]]
    assert latest_histories(frame, length=2) == {"u1": ["c", "a"], "u2": ["a"]}


def test_pad_histories_cuts_and_pads() -> None:
    padded = pad_histories([["x"], ["a", "b", "c"], []], length=2)
    assert padded.tolist() == [["x", ""], ["a", "b"], ["", ""]]


def test_category_levels_are_prefixes() -> None:
    assert category_levels("Footwear>Running>Trail>Extra") == ["Footwear", "Footwear>Running", "Footwear>Running>Trail"]
    assert category_levels(" Cards > Travel ") == ["Cards", "Cards>Travel", ""]
    assert category_levels(None) == ["", "", ""]


def test_item_content_inputs() -> None:
    catalog = pd.DataFrame(
        {"item_id": ["r_1"], "title": ["Trail shoe"], "description": ["Grippy"], "category": ["A>B"], "price": [12.5]}
    )
    inputs = item_content_inputs(catalog)
    assert inputs["text"].tolist() == ["Trail shoe Grippy"]
    assert (inputs["cat_l1"][0], inputs["cat_l2"][0], inputs["cat_l3"][0]) == ("A", "A>B", "")
    assert inputs["price"].dtype == np.float32 and inputs["price"][0] == 12.5


def test_implicit_interactions_weights_from_domain_config() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["r_u"] * 4,
            "item_id": ["r_a", "r_b", "r_c", "r_d"],
            "timestamp": [_ts(i) for i in range(4)],
            "event_type": ["impression", "view", "add_to_cart", "purchase"],
        }
    )
    out = implicit_interactions(events, "retail")
    assert out["item_id"].tolist() == ["r_b", "r_c", "r_d"]
    assert out["weight"].tolist() == [1.0, 2.0, 4.0]


def test_sampling_probabilities_are_row_shares() -> None:
    assert sampling_probabilities(pd.Series(["a", "a", "b", "a"])).tolist() == [0.75, 0.75, 0.25, 0.75]


def test_user_feature_spec_encodes_frames_and_requests_alike() -> None:
    profiles = pd.DataFrame(
        {"user_id": ["u1", "u2"], "age": [30.0, None], "has_arrears": [True, False], "country": ["FR", None],
         "products_held": [["b_1"], []]}
    )
    spec = UserFeatureSpec.from_frame(profiles)
    assert spec == UserFeatureSpec(numeric=("age", "has_arrears"), categorical=("country",))
    numeric, categorical = spec.encode(["u2", "u1", "unknown"], profiles)
    assert np.isnan(numeric[0, 0]) and numeric[0, 1] == 0.0
    assert numeric[1].tolist() == [30.0, 1.0]
    assert np.isnan(numeric[2]).all()
    assert categorical[:, 0].tolist() == ["country=", "country=FR", "country="]
    one_numeric, one_categorical = spec.encode_one({"age": 30, "has_arrears": True, "country": "FR", "other": 1})
    assert one_numeric.tolist() == [numeric[1].tolist()] and one_categorical.tolist() == [["country=FR"]]
    assert UserFeatureSpec.from_json(spec.to_json()) == spec
