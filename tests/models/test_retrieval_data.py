"""Input preparation of the retrieval models: histories, taxonomy levels, profile encoding, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.retrieval.data import (
    UserFeatureSpec,
    category_levels,
    implicit_interactions,
    item_content_inputs,
    latest_histories,
    pad_histories,
    padded,
    with_histories,
)
from models.retrieval.examples import RetrievalExamples, logq, write_meta


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


def test_logq_is_the_items_share_of_rows() -> None:
    counts = pd.Series({"a": 3, "b": 1})
    assert logq(np.array(["a", "b", "a", "z"], dtype=object), counts, 4).tolist() == [0.75, 0.25, 0.75, 0.0]


def _examples_world() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1"] * 4 + ["u2"] * 2, "item_id": ["a", "b", "a", "gone", "b", "c"],
                         "timestamp": [_ts(i) for i in (0, 1, 2, 3, 0, 1)], "weight": [1.0, 2.0, 1.0, 1.0, 4.0, 1.0]})


def test_examples_keep_catalog_items_and_stream_padded_batches_in_every_order() -> None:
    examples = RetrievalExamples.from_interactions(_examples_world(), ["a", "b", "c"], history_length=2)
    assert examples.rows == 5  # "gone" is not in the catalog
    rows = {(u, i, tuple(h)) for batch in examples.batches(2, 2, seed=3)
            for u, i, h in zip(batch["user_id"], batch["item_id"], batch["history"].tolist(), strict=True)}
    assert rows == {("u1", "a", ("", "")), ("u1", "b", ("a", "")), ("u1", "a", ("b", "")),
                    ("u2", "b", ("", "")), ("u2", "c", ("b", ""))}
    first = [b["item_id"].tolist() for b in examples.batches(5, 2, seed=1)]
    assert first != [b["item_id"].tolist() for b in examples.batches(5, 2, seed=2)]  # reshuffled per epoch
    assert examples.item_counts().to_dict() == {"a": 2, "b": 2, "c": 1}
    assert examples.item_counts(with_history_only=True).to_dict() == {"a": 1, "b": 1, "c": 1}
    assert examples.distinct("user_id").tolist() == ["u1", "u2"]
    with_history = [h for b in examples.batches(8, 2, with_history_only=True) for h in b["history"].tolist()]
    assert sorted(with_history) == [["a", ""], ["b", ""], ["b", ""]]


def test_padding_reads_sliced_and_null_lists() -> None:
    lists = pa.array([["a", "b", "c"], None, [], ["d"]], pa.list_(pa.string())).slice(1)
    assert padded(lists, 2).tolist() == [["", ""], ["", ""], ["d", ""]]
    assert padded(pa.array([["x", "y", "z"]], pa.list_(pa.string())).slice(0), 2).tolist() == [["x", "y"]]


def test_examples_from_shards_refuse_a_partial_write(tmp_path: Path) -> None:
    table = RetrievalExamples.from_interactions(_examples_world(), ["a", "b", "c"], 2).source
    pq.write_table(table.slice(0, 3), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(3), tmp_path / "part-1.parquet")
    write_meta(tmp_path, 5)
    assert RetrievalExamples.from_shards(tmp_path).rows == 5
    write_meta(tmp_path, 6)
    with pytest.raises(ValueError, match="partial"):
        RetrievalExamples.from_shards(tmp_path)


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
