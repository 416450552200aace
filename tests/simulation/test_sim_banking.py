"""Banking logs obey the lending rules: checked from the published tables alone, not from the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _passes(user: pd.Series, product: pd.Series, held: set[str]) -> bool:
    def rule(name: str) -> float | None:
        value = product[name]
        return None if pd.isna(value) else float(value)

    checks = [
        rule("min_age") is None or user["age"] >= rule("min_age"),
        rule("max_age") is None or user["age"] <= rule("max_age"),
        rule("min_income") is None or user["income"] >= rule("min_income"),
        rule("min_credit_score") is None or user["credit_score"] >= rule("min_credit_score"),
        rule("max_dti") is None or user["dti"] <= rule("max_dti"),
        not (product["requires_no_arrears"] and user["has_arrears"]),
        product["item_id"] not in held,
        not held & set(product["excludes"] if product["excludes"] is not None else []),
    ]
    return all(checks)


def test_every_approval_respects_eligibility_at_its_time(tiny_world):
    users = tiny_world.users("banking").set_index("user_id")
    catalog = tiny_world.catalog("banking").set_index("item_id", drop=False)
    events = tiny_world.all_events("banking")
    decisions = events[events["event_type"].isin(["application_approved", "decline"])]
    approved = decisions[decisions["event_type"] == "application_approved"]
    final = {u: set(h) for u, h in users["products_held"].items()}
    # holdings before the period = final holdings minus what was approved during it
    held = {u: final[u] - set(approved.loc[approved["user_id"] == u, "item_id"]) for u in final}
    refused_ineligible = 0
    for row in decisions.itertuples():
        ok = _passes(users.loc[row.user_id], catalog.loc[row.item_id], held[row.user_id])
        if row.event_type == "application_approved":
            assert ok, f"{row.user_id} was approved for {row.item_id} while ineligible"
            held[row.user_id].add(row.item_id)
        else:
            refused_ineligible += not ok
    assert held == final  # the published profiles hold exactly the initial products plus approvals
    assert len(approved) >= 20 and refused_ineligible >= 5  # the legacy policy shows ineligible products


def test_initial_holdings_respect_exclusions_and_catalog_rules(tiny_world):
    truth = tiny_world.truth("banking")
    catalog = tiny_world.catalog("banking")
    excludes = catalog.set_index("item_id")["excludes"]
    for row in truth.held_initial:
        held = set(truth.item_ids[row])
        for item in held:
            assert not held & set(excludes[item] if excludes[item] is not None else [])
    groups = catalog["excludes"].dropna().map(frozenset)
    assert len(groups) >= 10  # card ladder, core loans, residential mortgages, ISAs
    assert catalog["product_type"].value_counts().to_dict() == {
        "savings": 10, "insurance": 9, "credit_card": 8, "personal_loan": 7, "mortgage": 6}
    assert np.isin(["min_credit_score", "max_dti", "requires_no_arrears"], catalog.columns).all()
