"""Folding the streamed ``user_activity`` row into the nightly ``user_history`` row and account features
(hand-computed; serving's use of both: tests/serving/test_pipeline.py)."""

from __future__ import annotations

from common.account_events import fresh_account_features
from common.cross_features import (
    CAT_KEYS,
    CAT_LAST_TS,
    CAT_VIEWS,
    HIST_ITEM_IDS,
    HIST_ITEM_LAST_TS,
    HIST_ITEM_VIEWS,
    with_recent_activity,
)
from common.features import NO_TIME_DAYS


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


DAY = 86_400


def test_the_streamed_account_state_refreshes_the_nightly_account_features() -> None:
    now = 1_000 * DAY
    activity = {"salary_change_ts": now - DAY // 2, "large_transfer_ts": [now - 10 * DAY, now - 89 * DAY, now - 91 * DAY]}
    assert fresh_account_features(activity, now) == {"days_since_salary_change": 0.5, "large_transfers_90d": 2}
    assert fresh_account_features({"salary_change_ts": 0, "large_transfer_ts": []}, now) == {"large_transfers_90d": 0}
    assert fresh_account_features({"salary_change_ts": now - 900 * DAY}, now) == {"days_since_salary_change": NO_TIME_DAYS}
    assert fresh_account_features({}, now) == {}  # a row without account state: the nightly values stand

