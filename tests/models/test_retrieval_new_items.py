"""New-item slots of the content retriever: the launch window, the exact search and the merge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from common.epoch import epoch_seconds
from models.retrieval.new_items import DAY_SECONDS, NewItemIndex, NewItemSlots, with_new_items

DAY0 = pd.Timestamp("2024-05-01", tz="UTC")


def _index() -> NewItemIndex:
    # item -> (launch day, vector); the catalog lists them out of launch order, one has no launch time
    items = {"old": (0, [1.0, 0.0]), "d10": (10, [0.6, 0.8]), "d12": (12, [0.8, 0.6]), "d13": (13, [0.0, 1.0]),
             "d20": (20, [1.0, 0.0])}
    ids = ["d13", "old", "d20", "d10", "d12", "gone"]
    vectors = np.array([items[i][1] if i in items else [1.0, 1.0] for i in ids], dtype="float32")
    catalog = pd.DataFrame({"item_id": list(items) + ["not-in-bundle"],
                            "launched_at": [DAY0 + pd.Timedelta(days=d) for d, _ in items.values()] + [DAY0]})
    return NewItemIndex.build(ids, vectors, catalog["item_id"], epoch_seconds(catalog["launched_at"]))


def _day(d: float) -> float:
    return DAY0.timestamp() + d * DAY_SECONDS


def test_index_keeps_catalog_items_sorted_by_launch():
    index = _index()
    assert index.ids.tolist() == ["old", "d10", "d12", "d13", "d20"]  # "gone" has no launch time: left out
    assert np.all(np.diff(index.launched_s) > 0)


def test_search_ranks_only_the_window_by_content_score():
    index = _index()
    ids, scores = index.search(np.array([1.0, 0.0]), _day(10), _day(13), k=2)
    assert ids == ["d12", "d10"]  # "old" and "d20" score 1.0 but were not launched in the window
    np.testing.assert_allclose(scores, [0.8, 0.6], rtol=1e-6)
    assert index.search(np.array([1.0, 0.0]), _day(10), _day(13), k=5, exclude={"d12"})[0] == ["d10", "d13"]
    assert index.search(None, _day(0), _day(30), k=3) == ([], pytest.approx(np.zeros(0)))
    assert index.search(np.array([1.0, 0.0]), _day(14), _day(19), k=3)[0] == []


def test_with_new_items_keeps_slots_for_new_items_and_k_in_total():
    ids, scores = ["a", "b", "c", "d"], np.array([0.9, 0.8, 0.7, 0.6])
    merged, merged_scores = with_new_items(ids, scores, ["n1", "n2", "n3"], np.array([0.75, 0.5, 0.4]), k=4, slots=2)
    assert merged == ["a", "b", "n1", "n2"]  # two established items gave way; ordered by score
    assert np.all(np.diff(merged_scores) <= 0)
    # a new item already in the content top-k takes its slot once, no duplicate
    merged, _ = with_new_items(["a", "n1", "b"], np.array([0.9, 0.8, 0.7]), ["n1"], np.array([0.8]), k=3, slots=1)
    assert merged == ["a", "n1", "b"]
    # fewer new items than slots: the content list fills the rest
    assert with_new_items(ids, scores, [], np.zeros(0), k=3, slots=2)[0] == ["a", "b", "c"]


def test_slot_settings_are_bounded():
    assert NewItemSlots(share=0.2).slots(100) == 20
    assert NewItemSlots(share=0.0).slots(100) == 0
    with pytest.raises(ValidationError):
        NewItemSlots(share=1.5)
