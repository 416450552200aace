"""The generated logs look like a real shop: schema-valid, Zipf-like, with stock-outs, arrivals, text signal."""

from __future__ import annotations

import re
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from common.schemas import parse_event_line, validate_catalog_item, validate_event, validate_user
from simulation.profiles import get_profile


def test_summary_matches_the_tiny_profile(tiny_world):
    profile = get_profile("tiny")
    retail = tiny_world.summary.domains["retail"]
    assert retail.users == profile.retail.users + profile.days * profile.retail.new_users_per_day
    assert retail.items == profile.retail.items + profile.days * profile.retail.new_items_per_day
    assert 10_000 <= retail.events <= 30_000
    assert retail.lake_events + retail.incoming_events == retail.events
    assert tiny_world.summary.domains["banking"].items == 40
    assert set(tiny_world.summary.domains["banking"].events_by_type) == {
        "impression", "click", "view", "application_start", "application_approved", "decline",
        "card_spend", "salary_credit", "transfer"}


def test_ids_carry_the_domain_prefixes(tiny_world):
    assert tiny_world.users("retail")["user_id"].iloc[122] == "r_u000123"
    assert tiny_world.catalog("retail")["item_id"].iloc[41] == "r_i00042"
    assert tiny_world.users("banking")["user_id"].str.fullmatch(r"b_u\d{6}").all()
    assert tiny_world.catalog("banking")["item_id"].str.fullmatch(r"b_p\d{3}").all()


def test_events_catalog_and_users_validate(tiny_world):
    for domain in ("retail", "banking"):
        events = tiny_world.all_events(domain)
        sample = events.sample(2_000, random_state=0).to_dict("records")
        rejected = [rej for rec in sample if (rej := validate_event(rec)[1]) is not None]
        assert rejected == []
        lines = tiny_world.incoming_lines(domain)
        assert lines and all(parse_event_line(line)[1] is None for line in lines)
        assert events["event_id"].is_unique
        assert all(validate_catalog_item(r)[1] is None for r in tiny_world.catalog(domain).to_dict("records"))
        assert all(validate_user(r)[1] is None for r in tiny_world.users(domain).to_dict("records"))


def test_last_day_is_incoming_and_the_rest_is_in_the_lake(tiny_world):
    lake = tiny_world.lake_events("retail")
    end = pd.Timestamp(tiny_world.summary.end_date, tz="UTC")
    assert lake["timestamp"].max() < end
    assert lake["timestamp"].dt.date.nunique() == get_profile("tiny").days - 1
    today = [parse_event_line(line)[0] for line in tiny_world.incoming_lines("retail")]
    assert {e.timestamp.date() for e in today} == {tiny_world.summary.end_date}
    assert [e.timestamp for e in today] == sorted(e.timestamp for e in today)


def test_popularity_is_zipf_like(tiny_world):
    events = tiny_world.lake_events("retail")
    interactions = events[events["event_type"] != "impression"]["item_id"].value_counts()
    counts = interactions.reindex(tiny_world.catalog("retail")["item_id"], fill_value=0).sort_values(ascending=False)
    top_decile = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.4  # uniform would be 0.1
    ranks = np.arange(1, len(counts) + 1)
    head = counts.to_numpy() > 0
    slope = np.polyfit(np.log(ranks[head]), np.log(counts.to_numpy()[head]), 1)[0]
    assert -3.0 < slope < -0.7


def test_out_of_stock_items_exist_and_are_never_bought(tiny_world):
    catalog = tiny_world.catalog("retail")
    out = set(catalog.loc[catalog["inventory"] == 0, "item_id"])
    assert len(out) >= 5
    events = tiny_world.all_events("retail")
    shown = set(events.loc[events["event_type"] == "impression", "item_id"])
    assert out & shown  # the legacy policy knows nothing about stock
    bought = set(events.loc[events["event_type"].isin(["add_to_cart", "purchase"]), "item_id"])
    assert not out & bought


def test_new_users_and_items_appear_on_later_days_never_before_arrival(tiny_world):
    start = pd.Timestamp(tiny_world.summary.start_date, tz="UTC")
    events = tiny_world.all_events("retail")
    catalog = tiny_world.catalog("retail").set_index("item_id")
    users = tiny_world.users("retail").set_index("user_id")
    launched = events["item_id"].map(catalog["launched_at"])
    signed_up = events["user_id"].map(users["signed_up_at"])
    assert (events["timestamp"] > launched).all() and (events["timestamp"] > signed_up).all()
    assert (launched >= start).sum() > 0 and (signed_up >= start).sum() > 0
    new_items = events.loc[launched >= start, "timestamp"].dt.date.nunique()
    assert new_items >= 3  # new items show up on several later days


def test_purchases_carry_value_and_quantity(tiny_world):
    events = tiny_world.all_events("retail")
    price = tiny_world.catalog("retail").set_index("item_id")["price"]
    bought = events[events["event_type"] == "purchase"]
    assert len(bought) > 20
    qty = bought["quantity"].astype(int)
    assert (qty >= 1).all()
    np.testing.assert_allclose(bought["value"].astype(float), (bought["item_id"].map(price) * qty).round(2))
    pairs = bought[["user_id", "item_id"]]
    assert not pairs.duplicated().any()  # no repurchase


TEMPLATE = {"from", "part", "of", "our", "range", "in", "features", "and", "choice", "built", "to", "last",
            "great", "value", "for", "use"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z-]+", text.lower())) - TEMPLATE


def test_descriptions_carry_category_and_latent_signal(tiny_world):
    catalog = tiny_world.catalog("retail")
    truth = tiny_world.truth("retail")
    words = [_words(d) for d in catalog["description"]]
    dept = catalog["category"].str.split(">").str[0].to_numpy()
    leaf = catalog["category"].to_numpy()
    unit = truth.item_vec / np.linalg.norm(truth.item_vec, axis=1, keepdims=True)
    same_leaf, other_dept, overlap, cosine = [], [], [], []
    for a, b in combinations(range(len(catalog)), 2):
        jaccard = len(words[a] & words[b]) / len(words[a] | words[b])
        if leaf[a] == leaf[b]:
            same_leaf.append(jaccard)
        elif dept[a] != dept[b]:
            other_dept.append(jaccard)
        if dept[a] == dept[b]:
            overlap.append(jaccard)
            cosine.append(float(unit[a] @ unit[b]))
    assert np.mean(same_leaf) > 2 * np.mean(other_dept)
    # within a department, items with similar latent vectors share more description words
    assert spearmanr(overlap, cosine).statistic > 0.2
