"""Folding the streamed ``user_activity`` row into the nightly ``user_history`` row (hand-computed)."""

from __future__ import annotations

from common.cross_features import (
    CAT_KEYS,
    CAT_LAST_TS,
    CAT_VIEWS,
    HIST_ITEM_IDS,
    HIST_ITEM_LAST_TS,
    HIST_ITEM_VIEWS,
    with_recent_activity,
)


def test_activity_counts_are_lower_bounds_and_new_keys_are_appended() -> None:
    history = {HIST_ITEM_IDS: ["a"], HIST_ITEM_LAST_TS: [100], HIST_ITEM_VIEWS: [0], "hist_item_purchases": [1],
               "hist_item_declines": [0], CAT_KEYS: ["Shoes"], CAT_VIEWS: [5], "cat_purchases": [1],
               CAT_LAST_TS: [100]}
    activity = {"last_event_ts": 900, "recent_item_ids": ["b", "a"],
                "recent_category_keys": ["Shoes", "Bags"], "recent_category_counts": [2, 3]}
    row = with_recent_activity(history, activity)
    assert row[HIST_ITEM_IDS] == ["a", "b"]
    assert row[HIST_ITEM_VIEWS] == [1, 1]  # "a" was seen again: at least one view; "b" is new
    assert row[HIST_ITEM_LAST_TS] == [100, 900]
    assert row[CAT_KEYS] == ["Shoes", "Bags"]
    assert row[CAT_VIEWS] == [5, 3]  # max(5, 2): never counted twice; Bags new with its recent count
    assert row[CAT_LAST_TS] == [100, 900]
    assert history[CAT_VIEWS] == [5]  # the input row is not modified


def test_a_user_without_nightly_history_gets_one_from_the_stream() -> None:
    row = with_recent_activity(None, {"last_event_ts": 50, "recent_item_ids": ["x"],
                                      "recent_category_keys": ["Tents"], "recent_category_counts": [4]})
    assert (row[HIST_ITEM_IDS], row[CAT_KEYS], row[CAT_VIEWS]) == (["x"], ["Tents"], [4])
