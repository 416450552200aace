"""The pure feature state: hand-computed rows, order-insensitivity, windows, inventory, seeding."""

from __future__ import annotations

import itertools

import orjson
import pytest

from beam_jobs.item_state import (
    HOUR,
    HourDelta,
    ItemCounts,
    ItemState,
    Refresh,
    Sale,
    domain_of_id,
    units_sold,
)
from beam_jobs.user_state import UserActivityState
from common.features import ITEM_STATS, RECENT_LENGTH, USER_ACTIVITY, smoothed_ctr
from common.schemas import validate_event

TRAIL, ROAD = "Shoes>Running>Trail", "Shoes>Running>Road"
CATS = {"r_i1": TRAIL, "r_i2": ROAD, "r_i4": TRAIL}


def _event(events, *args, **kwargs):
    event, rejection = validate_event(events.record(*args, **kwargs))
    assert rejection is None, rejection
    return event


def test_user_row_is_hand_computed_and_order_insensitive(events) -> None:
    t0 = int(events.t0.timestamp())
    batch = [
        _event(events, 1, "view", item="r_i1", seconds=10, session_id="s1"),
        _event(events, 2, "click", item="r_i2", seconds=20, session_id="s1"),
        _event(events, 3, "impression", item="r_i3", seconds=30, session_id="s2"),
        _event(events, 4, "purchase", item="r_i1", seconds=40, session_id="s2"),
        _event(events, 5, "view", item="r_i4", seconds=35, session_id="s2"),  # out of order
    ]
    expected = {
        "user_id": "r_u1", "event_timestamp": t0 + 40, "session_depth": 2, "last_event_ts": t0 + 40,
        "last_purchase_ts": t0 + 40, "recent_item_ids": ["r_i1", "r_i4", "r_i2"],
        "recent_category_keys": [TRAIL, ROAD], "recent_category_counts": [2, 1],
        "salary_credit": 0.0, "salary_credit_ts": 0, "salary_change_ts": 0, "large_transfer_ts": [],
    }
    for order in itertools.permutations(batch):
        state = UserActivityState("retail")
        assert state.apply_all(order, CATS)
        assert state.row("r_u1") == expected
    assert list(expected)[2:] == USER_ACTIVITY.names


def test_user_state_survives_json_and_ignores_impressions(events) -> None:
    state = UserActivityState("retail")
    assert not state.apply(_event(events, 1, "impression"), TRAIL)
    assert state.row("r_u1")["last_event_ts"] == 0
    state.apply(_event(events, 2, "view"), TRAIL)
    assert UserActivityState.from_json(state.to_json()) == state


def test_recent_items_keep_the_newest_twenty_even_out_of_order(events) -> None:
    state = UserActivityState("retail")
    for n in range(RECENT_LENGTH + 5):
        state.apply(_event(events, n, "view", item=f"r_x{n}", seconds=n), None)
    state.apply(_event(events, 99, "view", item="r_x0", seconds=1.5), None)  # newer than r_x0/r_x1, still too old
    ids = state.row("r_u1")["recent_item_ids"]
    assert ids == [f"r_x{n}" for n in range(RECENT_LENGTH + 4, 4, -1)]


def test_banking_conversion_is_the_approval(events) -> None:
    state = UserActivityState("banking")
    state.apply(_event(events, 1, "application_start", user="b_u1", item="b_p1", domain="banking"), None)
    assert state.row("b_u1")["last_purchase_ts"] == 0
    state.apply(_event(events, 2, "application_approved", user="b_u1", item="b_p1", domain="banking", seconds=5), None)
    assert state.row("b_u1")["last_purchase_ts"] == int(events.t0.timestamp()) + 5


def test_seed_merges_the_batch_row_and_is_idempotent(events) -> None:
    t0 = int(events.t0.timestamp())
    online = {"last_event_ts": t0 - 100, "last_purchase_ts": t0 - 500, "session_depth": 3,
              "recent_item_ids": ["r_i2", "r_i1"]}
    state = UserActivityState("retail")
    state.seed(online, CATS)
    state.apply_all([_event(events, 1, "view", item="r_i4", seconds=5, session_id="new")], CATS)
    once = state.row("r_u1")
    state.seed(online, CATS)  # a replay seeds again: nothing changes
    assert state.row("r_u1") == once
    assert once["recent_item_ids"] == ["r_i4", "r_i2", "r_i1"]
    assert once["session_depth"] == 1 and once["last_purchase_ts"] == t0 - 500
    assert once["recent_category_keys"] == [TRAIL, ROAD] and once["recent_category_counts"] == [2, 1]


def _account(events, n: int, kind: str, day: float, value: float):
    item = {"salary_credit": "b_acct_salary", "transfer": "b_xfer_out", "card_spend": "b_mcc_travel"}[kind]
    return _event(events, n, kind, user="b_u1", item=item, seconds=day * 86_400, domain="banking", session_id=None,
                  value=value)


def test_account_events_keep_the_salary_and_transfer_state_in_any_order(events) -> None:
    """Salary 4000 (day 0), 4000 (day 30), 4600 (day 60): the change is day 60; transfers of 12,000
    (days 1 and 95) and 200 (small): the 90 days before the newest keep one. Card payments change nothing."""
    t0 = int(events.t0.timestamp())
    batch = [_account(events, 1, "salary_credit", 0, 4000.0), _account(events, 2, "salary_credit", 30, 4000.0),
             _account(events, 3, "salary_credit", 60, 4600.0), _account(events, 4, "transfer", 1, 12_000.0),
             _account(events, 5, "transfer", 95, 12_000.0), _account(events, 6, "transfer", 96, 200.0),
             _account(events, 7, "card_spend", 97, 80.0)]
    rows = set()
    for order in itertools.permutations(batch):
        state = UserActivityState("banking")
        state.apply_all(order, {})
        row = state.row("b_u1")
        rows.add((row["salary_credit"], row["salary_credit_ts"], row["salary_change_ts"], tuple(row["large_transfer_ts"]),
                  row["event_timestamp"], row["last_event_ts"], tuple(row["recent_item_ids"])))
    day = 86_400
    assert rows == {(4600.0, t0 + 60 * day, t0 + 60 * day, (t0 + 95 * day,), t0 + 95 * day, 0, ())}
    assert UserActivityState.from_json(state.to_json()) == state
    assert not state.apply(_account(events, 8, "card_spend", 98, 10.0), None)  # nightly features only


def test_account_state_continues_the_batch_row(events) -> None:
    """Seeded with the batch's last credit (4000) and change, a credit of 4600 is a change; one of 4010 is not."""
    t0 = int(events.t0.timestamp())
    online = {"last_event_ts": 0, "salary_credit": 4000.0, "salary_credit_ts": t0 - 86_400, "salary_change_ts": t0 - 900_000,
              "large_transfer_ts": [t0 - 3_600]}
    same = UserActivityState("banking")
    same.seed(online, {})
    same.apply(_account(events, 1, "salary_credit", 0, 4010.0), None)
    assert same.row("b_u1")["salary_change_ts"] == t0 - 900_000
    state = UserActivityState("banking")
    state.seed(online, {})
    state.seed(online, {})  # a replayed seed changes nothing
    state.apply(_account(events, 1, "salary_credit", 0, 4600.0), None)
    row = state.row("b_u1")
    assert (row["salary_credit"], row["salary_change_ts"], row["large_transfer_ts"]) == (4600.0, t0, [t0 - 3_600])
    assert row["event_timestamp"] == t0
    old_state = orjson.loads(state.to_json())  # a state committed before the account fields
    for key in ("salary_credits", "seeded_salary_change_ts", "large_transfers", "last_account_ts"):
        del old_state[key]
    assert UserActivityState.from_json(orjson.dumps(old_state)).row("b_u1")["salary_change_ts"] == 0


def test_item_counts_follow_the_domain_config(events) -> None:
    view = ItemCounts.of(_event(events, 1, "view"), 7.0)
    impression = ItemCounts.of(_event(events, 2, "impression"), 5.0)
    slate_click = ItemCounts.of(_event(events, 3, "click", request_id="q1"), 9.0)
    organic_click = ItemCounts.of(_event(events, 4, "click"), 9.0)
    total = view + impression + slate_click + organic_click
    assert (total.positives, total.impressions, total.clicks, total.arrived_at) == (3, 1, 1, 5.0)
    assert units_sold(_event(events, 5, "purchase", quantity=3)) == 3
    assert units_sold(_event(events, 6, "purchase")) == 1 and units_sold(_event(events, 7, "view")) == 0
    assert domain_of_id("b_p1") == "banking" and domain_of_id("ml_1") == "movielens"


def test_item_window_is_the_last_24_hours_and_expires() -> None:
    h0 = 1_717_408_800  # an hour start
    state = ItemState("retail", base_inventory=3)
    arrived = state.apply([
        HourDelta(h0, ItemCounts(2, 1, 0, arrived_at=50.0)),
        HourDelta(h0 - 23 * HOUR, ItemCounts(1, 0, 0, arrived_at=40.0)),
        HourDelta(h0 - 24 * HOUR, ItemCounts(5, 9, 9, arrived_at=30.0)),  # a day old: out of the window
        Sale(3, 45.0),
        Refresh(),
    ])
    assert arrived == 30.0
    as_of = h0 + 1_800
    assert state.prune(as_of) == 1
    row = state.row("r_i1", as_of)
    assert row == {"item_id": "r_i1", "event_timestamp": as_of, "popularity_1d": 3, "impressions_1d": 1,
                   "ctr_1d": pytest.approx(1 / 21), "inventory": 0, "in_stock": False}
    assert list(row)[2:] == ITEM_STATS.names
    assert state.expires_at() == h0 + HOUR
    assert state.prune(h0 + HOUR) == 1 and state.row("r_i1", h0 + HOUR)["popularity_1d"] == 2
    assert ItemState.from_json(state.to_json()) == state


def test_inventory_rebases_on_a_new_catalog_value() -> None:
    state = ItemState("retail")
    state.rebase(2)
    state.add_sale(1)
    state.rebase(2)  # same catalog value: sales keep counting
    assert state.inventory == 1
    state.rebase(10)  # restocked
    assert state.inventory == 10
    state.rebase(None)  # dropped from the catalog: no known stock
    assert (state.inventory, state.row("r_i1", 0.0)["in_stock"]) == (0, False)
    assert smoothed_ctr(0, 0) == pytest.approx(0.05)
