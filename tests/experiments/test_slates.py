"""Slate metrics (coverage, novelty, serendipity, intra-list diversity) on hand-made slates."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from experiments.slates import SlateReference, category_prefixes, slate_metrics


def reference() -> SlateReference:
    # item d was interacted with but is not in the catalog; 3 reference users
    return SlateReference.build({"a": "X>Y", "b": "X>Z", "c": "W"}, {"a": 3, "b": 1, "d": 2}, n_users=3)


def test_category_prefixes() -> None:
    assert category_prefixes("Shoes>Running>Trail") == ["Shoes", "Shoes>Running", "Shoes>Running>Trail"]
    assert category_prefixes(None) == []


def test_reference_information_and_popularity() -> None:
    ref = reference()
    assert list(ref.items) == ["a", "b", "c", "d"]
    # -log2((n_i + 1) / (n_users + 1)); the unknown row has n_i = 0
    assert ref.information.tolist() == pytest.approx([0.0, 1.0, 2.0, -math.log2(3 / 4), 2.0])
    assert [ref.items[i] for i in ref.popular] == ["a", "d", "b", "c"]
    assert ref.rows_of(pd.Series(["c", "zzz"]).to_numpy()).tolist() == [2, 4]


def test_slate_metrics_on_ragged_slates_with_an_unknown_item() -> None:
    impressions = pd.DataFrame({
        "request_id": ["s1", "s1", "s1", "s2", "s2"],
        "position": [1, 2, 3, 2, 1],  # s2 arrives out of order: [c, e]
        "item_id": ["a", "b", "c", "e", "c"],
        "clicked": [0, 1, 1, 0, 1],
    })
    out = slate_metrics(impressions, reference())
    assert out["slates"] == 2
    assert out["coverage"] == 1.0  # a, b, c of a 3-item catalog
    assert out["novelty"] == pytest.approx((0 + 1 + 2 + 2 + 2) / 5)
    # s1: clicked b (in the popular top-3 a, d, b) and c (not): 1/3; s2: clicked c, not in top-2 a, d: 1/2
    assert out["serendipity"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # s1: cos(a, b) = 1/2, others 0 -> 1 - (1/2) / 3 = 5/6; s2: c vs an item without features -> 1
    assert out["intra_list_diversity"] == pytest.approx((5 / 6 + 1) / 2)


def test_slate_metrics_of_nothing() -> None:
    empty = pd.DataFrame(columns=["request_id", "position", "item_id", "clicked"])
    out = slate_metrics(empty, reference())
    assert out["slates"] == 0 and math.isnan(out["coverage"])
