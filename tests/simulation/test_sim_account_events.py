"""The banking world's account events: valid contract events that carry the life events' signal."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from common.account_events import ACCOUNT_EVENTS
from common.schemas import validate_event
from simulation.life_events import NAMES


def _account(tiny_world) -> pd.DataFrame:
    events = tiny_world.all_events("banking")
    return events[events["event_type"].isin(ACCOUNT_EVENTS)]


def test_account_events_pass_the_contract_and_stay_out_of_retail(tiny_world) -> None:
    account = _account(tiny_world)
    assert set(account["event_type"]) == set(ACCOUNT_EVENTS)
    for line in tiny_world.incoming_lines("banking"):
        record = orjson.loads(line)
        if record["event_type"] in ACCOUNT_EVENTS:
            event, rejection = validate_event(record, now=pd.Timestamp(record["timestamp"]).to_pydatetime())
            assert rejection is None, (record, rejection)
    assert account["item_id"].str.match(r"^b_(mcc_[a-z]+|acct_salary|xfer_out)$").all()
    assert (account["value"].astype(float) > 0).all() and account["session_id"].isna().all()
    assert not tiny_world.all_events("retail")["event_type"].isin(ACCOUNT_EVENTS).any()


def test_life_events_show_in_card_spending(tiny_world) -> None:
    """Customers who moved home in the period spend at home merchants; the others hardly do."""
    truth = tiny_world.truth("banking")
    account = _account(tiny_world)
    first, last = account["timestamp"].min(), account["timestamp"].max()
    at = pd.to_datetime(truth.life_at_us, unit="us", utc=True)
    moved = set(truth.user_ids[truth.life_user[(truth.life_kind == NAMES.index("moving_home")) & (at >= first)
                                               & (at < last - pd.Timedelta(days=2))]])
    home = account[account["item_id"] == "b_mcc_home"].groupby("user_id").size()
    rate_moved = np.mean([home.get(u, 0) for u in moved])
    others = [u for u in account["user_id"].unique() if u not in moved]
    rate_others = np.mean([home.get(u, 0) for u in others])
    assert len(moved) >= 5 and rate_moved > 5 * max(rate_others, 0.01), (len(moved), rate_moved, rate_others)
