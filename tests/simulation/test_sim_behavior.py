"""The behaviour model: known position bias, the funnels, and answering arbitrary slates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulation.behavior import SlateContext, respond


def _context(n: int, prefix: str, arms: list[str] | None = None) -> SlateContext:
    return SlateContext.build(
        request_ids=[f"{prefix}q-test-{k}" for k in range(n)], session_ids=[f"{prefix}s-test-{k}" for k in range(n)],
        devices=["web"] * n, timestamps=pd.date_range("2024-03-14", periods=n, freq="s", tz="UTC"), arms=arms)


@pytest.mark.parametrize("domain", ["retail", "banking"])
def test_logged_click_rate_falls_with_the_slot(tiny_world, domain):
    events = tiny_world.all_events(domain)
    by_slot = events[events["event_type"].isin(["impression", "click"])].groupby(["position", "event_type"]).size()
    ctr = (by_slot.xs("click", level="event_type") / by_slot.xs("impression", level="event_type")).sort_index()
    assert all(ctr.iloc[p + 1] < ctr.iloc[p] * 1.1 for p in range(4))  # first slots: monotone within 10 %
    assert ctr.iloc[0] > 2.5 * ctr.iloc[-1]


def test_respond_reproduces_the_known_examination_curve(tiny_world):
    truth = tiny_world.truth("retail")
    truth.in_stock[:] = False  # nothing can be bought, so relevance stays fixed during the run
    user, items = truth.user_ids[5], truth.item_ids[:10]
    n = 12_000
    slates = [list(np.roll(items, -(k % 10))) for k in range(n)]  # every item in every slot equally often
    events = respond(truth, [user] * n, slates, _context(n, "r_"), np.random.default_rng(0))
    clicks = events[events["event_type"] == "click"]["position"].astype(int).value_counts().sort_index()
    expected = truth.examination(np.arange(1, 11)) * truth.relevance([user] * 10, items).mean()
    observed = clicks.reindex(range(1, 11), fill_value=0).to_numpy() / n
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) < 4.5 * sigma)
    np.testing.assert_allclose(truth.examination([1, 2, 4]), [1.0, 2 ** -0.9, 4 ** -0.9])


def test_respond_handles_ragged_slates_and_tags_arms(tiny_world):
    truth = tiny_world.truth("retail")
    slates = [list(truth.item_ids[:10]), list(truth.item_ids[10:13])]
    events = respond(truth, truth.user_ids[:2], slates, _context(2, "r_", arms=["control", "treatment"]),
                     np.random.default_rng(1))
    impressions = events[events["event_type"] == "impression"]
    assert len(impressions) == 13
    assert impressions.groupby("request_id")["position"].max().tolist() == [10, 3]
    assert impressions["timestamp"].iloc[0] == pd.Timestamp("2024-03-14", tz="UTC")
    assert set(events["arm"]) == {"control", "treatment"}
    assert events["event_id"].is_unique
    with pytest.raises(KeyError):
        respond(truth, ["r_u999999"], [list(truth.item_ids[:2])], _context(1, "r_"), np.random.default_rng(1))


def test_respond_never_approves_an_ineligible_applicant(tiny_world):
    truth = tiny_world.truth("banking")
    before = truth.held.copy()
    users = np.repeat(truth.user_ids[:150], 20)
    eligible_before = truth.eligible(truth.user_ids[:150, None], truth.item_ids[None, :])  # (150 users, 40)
    events = respond(truth, users, [list(truth.item_ids)] * len(users), _context(len(users), "b_"),
                     np.random.default_rng(2))
    approved = events[events["event_type"] == "application_approved"]
    refused = events[events["event_type"] == "decline"]
    assert len(approved) > 20 and len(refused) > 20
    starts = set(events.loc[events["event_type"] == "application_start", "event_id"].str[:-4])
    assert set(approved["event_id"].str[:-4]) <= starts and set(refused["event_id"].str[:-4]) <= starts
    u, i = truth.user_index(approved["user_id"]), truth.item_index(approved["item_id"])
    assert eligible_before[u, i].all()  # holdings only grow, so approved now implies eligible before
    assert not before[u, i].any()
    assert truth.held[u, i].all()  # the world remembers the approvals
    conflicts = truth.held & ((truth.held.astype(int) @ truth.rules.excluded_by.T.astype(int)) > 0)
    assert not conflicts.any()


def test_every_funnel_step_follows_the_previous_one(tiny_world):
    for domain, chain in (("retail", ["click", "view", "add_to_cart", "purchase"]),
                          ("banking", ["view", "application_start", "application_approved"])):
        events = tiny_world.all_events(domain)
        events = events.assign(stem=events["event_id"].str[:-4])
        for earlier, later in zip(chain, chain[1:], strict=False):
            first = events[events["event_type"] == earlier].set_index("stem")["timestamp"]
            then = events[(events["event_type"] == later) & (events["request_id"].notna() | (earlier != "click"))]
            then = then.set_index("stem")["timestamp"]  # organic views have no click before them
            assert len(then) > 0 and then.index.isin(first.index).all()
            assert (then > first.reindex(then.index)).all()


def test_retail_declines_are_rare_and_on_low_relevance_items(tiny_world):
    events = tiny_world.all_events("retail")
    truth = tiny_world.truth("retail")
    declined = events[events["event_type"] == "decline"]
    clicked = events[events["event_type"] == "click"]
    impressions = (events["event_type"] == "impression").sum()
    assert 0 < len(declined) < 0.02 * impressions
    assert truth.relevance(declined["user_id"], declined["item_id"]).mean() < \
        0.5 * truth.relevance(clicked["user_id"], clicked["item_id"]).mean()
    assert declined["request_id"].notna().all()
