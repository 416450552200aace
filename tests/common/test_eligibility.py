"""The shared eligibility core: hand-computed rules with attribution, parsing, and agreement between
the simulator's ground truth and serving's hard filter on a generated bank."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.eligibility import (
    FAILURES,
    Applicants,
    ProductRules,
    exclusion_matrix,
    holds_an_excluder,
    parse_excludes,
    passes,
    rule_failures,
)
from serving.catalog import CatalogIndex
from serving.eligibility import UserContext, removal_masks
from serving.settings import FilterRules
from simulation.banking_world import build_banking_world
from simulation.eligibility import BankingRules
from simulation.profiles import PROFILES

NAN = np.nan
# products: 0 no rule at all, 1 premium card, 2 youth product, 3 lending product requiring no arrears
PRODUCTS = ProductRules(
    min_age=np.array([NAN, 21.0, 18.0, 18.0]),
    max_age=np.array([NAN, NAN, 25.0, NAN]),
    min_income=np.array([NAN, 50_000.0, NAN, NAN]),
    min_credit_score=np.array([NAN, 700.0, NAN, 600.0]),
    max_dti=np.array([NAN, 0.4, NAN, 0.5]),
    requires_no_arrears=np.array([False, True, False, True]),
)


def _one(**values: float | bool | None) -> Applicants:
    known = {"age": 30, "income": 60_000.0, "credit_score": 720, "dti": 0.3, "has_arrears": False}
    return Applicants.one(**{**known, **values})


def _failing(failures: dict[str, np.ndarray], product: int) -> set[str]:
    return {name for name, mask in failures.items() if np.broadcast_to(mask, (4,))[product]}


def test_each_rule_is_attributed_on_a_hand_built_case() -> None:
    failures = rule_failures(PRODUCTS, _one())
    assert list(failures) == list(FAILURES)
    assert [_failing(failures, p) for p in range(4)] == [set(), set(), {"max_age"}, set()]

    poor = rule_failures(PRODUCTS, _one(age=19, income=20_000.0, credit_score=590, dti=0.45, has_arrears=True))
    assert _failing(poor, 1) == {"min_age", "min_income", "min_credit_score", "max_dti", "arrears"}
    assert _failing(poor, 3) == {"min_credit_score", "arrears"}
    np.testing.assert_array_equal(passes(poor), [True, False, True, False])


def test_bounds_are_inclusive() -> None:
    edge = rule_failures(PRODUCTS, _one(age=25, income=50_000.0, credit_score=700, dti=0.4))
    np.testing.assert_array_equal(passes(edge), [True, True, True, True])


def test_an_unset_rule_never_restricts_and_an_unknown_value_fails_every_set_rule() -> None:
    unknown = Applicants.one(None, None, None, None, None)
    failures = rule_failures(PRODUCTS, unknown)
    assert _failing(failures, 0) == set()  # no rule set: open even to someone we know nothing about
    assert _failing(failures, 1) == {"min_age", "min_income", "min_credit_score", "max_dti", "arrears"}
    assert _failing(failures, 2) == {"min_age", "max_age"}
    for attribute, rules in {"age": {"min_age"}, "income": {"min_income"}, "credit_score": {"min_credit_score"},
                             "dti": {"max_dti"}, "has_arrears": {"arrears"}}.items():
        assert _failing(rule_failures(PRODUCTS, _one(**{attribute: None})), 1) == rules


def test_holdings_and_exclusions_are_their_own_rules() -> None:
    held = np.array([False, True, False, False])
    excluded = np.array([False, False, True, False])
    failures = rule_failures(PRODUCTS, _one(age=22), held=held, excluded=excluded)
    assert _failing(failures, 1) == {"already_held"} and _failing(failures, 2) == {"excludes"}
    np.testing.assert_array_equal(passes(failures), [True, False, False, True])


def _reference(rules: dict[str, float], user: dict[str, float]) -> bool:
    """One (user, product) pair in plain Python: the documented semantics, restated."""

    def ok(value: float, bound: float, at_least: bool) -> bool:
        if np.isnan(bound):
            return True
        return not np.isnan(value) and (value >= bound if at_least else value <= bound)

    return (
        ok(user["age"], rules["min_age"], True) and ok(user["age"], rules["max_age"], False)
        and ok(user["income"], rules["min_income"], True)
        and ok(user["credit_score"], rules["min_credit_score"], True)
        and ok(user["dti"], rules["max_dti"], False)
        and (not rules["requires_no_arrears"] or user["has_arrears"] == 0)
    )


maybe = st.none() | st.integers(0, 10)


@settings(max_examples=60, deadline=None)
@given(products=st.lists(st.tuples(maybe, maybe, maybe, maybe, maybe, st.booleans()), min_size=1, max_size=6),
       users=st.lists(st.tuples(maybe, maybe, maybe, maybe, st.none() | st.booleans()), min_size=1, max_size=6))
def test_a_users_by_products_grid_matches_the_pairwise_reference(products: list, users: list) -> None:
    def column(rows: list, k: int) -> np.ndarray:
        return np.array([NAN if r[k] is None else float(r[k]) for r in rows])

    rules = ProductRules(*(column(products, k) for k in range(5)),
                         requires_no_arrears=np.array([p[5] for p in products]))
    applicants = Applicants(*(column(users, k) for k in range(5)))
    grid = passes(rule_failures(rules.take(np.arange(len(products))[None, :]),
                                applicants.take(np.arange(len(users))[:, None])))
    names = ("min_age", "max_age", "min_income", "min_credit_score", "max_dti", "requires_no_arrears")
    fields = ("age", "income", "credit_score", "dti", "has_arrears")
    for u in range(len(users)):
        for p in range(len(products)):
            product = {n: getattr(rules, n)[p] for n in names}
            user = {f: getattr(applicants, f)[u] for f in fields}
            assert grid[u, p] == _reference(product, user), (product, user)


def test_holds_an_excluder_for_many_users_and_for_one() -> None:
    # excluded_by[p, q]: holding q rules out p; 0 and 1 exclude each other, 2 excludes 3.
    excluded_by = np.zeros((4, 4), dtype=bool)
    excluded_by[0, 1] = excluded_by[1, 0] = excluded_by[3, 2] = True
    holdings = np.array([[False, False, False, False], [True, False, True, False]])
    np.testing.assert_array_equal(holds_an_excluder(excluded_by, holdings),
                                  [[False] * 4, [False, True, False, True]])
    np.testing.assert_array_equal(holds_an_excluder(excluded_by[:, [2]], np.ones(1, dtype=bool)),
                                  [False, False, False, True])
    assert not holds_an_excluder(np.zeros((4, 0), dtype=bool), np.ones(0, dtype=bool)).any()


def test_catalog_parsing() -> None:
    frame = pd.DataFrame({
        "item_id": ["b_a", "b_b", "b_c"],
        "min_age": pd.Series([18, None, 21], dtype="Int32"),
        "max_dti": [0.5, None, np.nan],
        "min_credit_score": ["650", None, "oops"],  # unparseable counts as not set
        "requires_no_arrears": [True, None, False],
        "excludes": [["b_b", "b_gone"], None, np.array(["b_a"])],
    })
    rules = ProductRules.from_catalog(frame)
    np.testing.assert_array_equal(rules.min_age, [18.0, NAN, 21.0])
    np.testing.assert_array_equal(rules.max_dti, [0.5, NAN, NAN])
    np.testing.assert_array_equal(rules.min_credit_score, [650.0, NAN, NAN])
    assert np.isnan(rules.max_age).all() and np.isnan(rules.min_income).all()  # missing columns: not set
    np.testing.assert_array_equal(rules.requires_no_arrears, [True, False, False])

    masks = parse_excludes(frame["excludes"])
    assert sorted(masks) == ["b_a", "b_b", "b_gone"]  # a withdrawn product still excludes
    np.testing.assert_array_equal(masks["b_b"], [True, False, False])
    np.testing.assert_array_equal(exclusion_matrix(masks, ["b_a", "b_b", "b_c"], 3),
                                  [[False, True, False], [False, False, False], [True, False, False]])


@pytest.fixture(scope="module")
def bank():
    """A generated bank at the tiny profile's size (the world only, no events: well under a second)."""
    profile = PROFILES["tiny"]
    start_us = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp() * 1e6)
    return build_banking_world(profile.banking, profile.days, start_us, np.random.default_rng(5))


def test_the_catalog_parsers_agree_with_the_simulators_rules(bank) -> None:
    truth_rules = bank.truth.rules
    parsed = ProductRules.from_catalog(bank.catalog)
    for name, values in vars(parsed).items():
        np.testing.assert_array_equal(values, getattr(truth_rules.products, name), err_msg=name)
    item_ids = list(bank.catalog["item_id"])
    matrix = exclusion_matrix(parse_excludes(bank.catalog["excludes"]), item_ids, len(item_ids))
    np.testing.assert_array_equal(matrix, truth_rules.excluded_by)
    assert truth_rules.excluded_by.any()  # the check above is not vacuous
    index = CatalogIndex.from_frame(bank.catalog, "banking")
    for name, values in index.rules.items():
        np.testing.assert_array_equal(values, getattr(parsed, name), err_msg=name)


def test_serving_and_the_simulator_agree_on_every_user(bank) -> None:
    """Serving's hard filter (one user x catalog) removes exactly what the ground truth calls ineligible,
    including for users whose attributes are partly unknown."""
    truth = bank.truth
    rules = truth.rules
    users = bank.users.reset_index(drop=True)
    rng = np.random.default_rng(1)
    n_users, n_items = len(users), len(truth.item_ids)
    # Blank out a tenth of each attribute: the simulator holds NaN, serving None.
    unknown = {f: rng.random(n_users) < 0.1 for f in ("age", "income", "credit_score", "dti", "has_arrears")}
    blanked = BankingRules.from_arrays({
        **rules.arrays(),
        **{f: np.where(unknown[f], NAN, getattr(rules.applicants, f).astype(np.float64)) for f in unknown},
    })
    held = truth.held_initial
    expected = blanked.eligible(held, np.arange(n_users)[:, None], np.arange(n_items)[None, :])
    assert 0.1 < expected.mean() < 0.9 and held.any()

    catalog = CatalogIndex.from_frame(bank.catalog, "banking")
    assert list(catalog.item_ids) == list(truth.item_ids)
    only_eligibility = FilterRules(out_of_stock=False, purchased=False, declined=False, eligibility=True)
    for u in range(n_users):
        row = users.iloc[u]
        user = UserContext(
            str(row.user_id),
            **{f: None if unknown[f][u] else row[f].item() for f in unknown},
            products_held=frozenset(truth.item_ids[held[u]]),
        )
        masks = removal_masks(catalog, user, only_eligibility, catalog.in_stock)
        removed = np.logical_or.reduce([m for name, m in masks.items() if name.startswith("eligibility:")])
        np.testing.assert_array_equal(~removed, expected[u], err_msg=str(row.user_id))
        failures = blanked.failures(held, np.array([u]), np.arange(n_items))
        for name, mask in failures.items():  # and the same rule is blamed
            np.testing.assert_array_equal(masks[f"eligibility:{name}"], mask, err_msg=f"{row.user_id} {name}")
