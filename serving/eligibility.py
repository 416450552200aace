"""Hard filters: which catalog items may be shown to a user at all.

Every rule yields a boolean mask over the catalog of the items it *removes*. The rules are hard
constraints -- re-ranking never trades them for score. Banking eligibility and responsible lending
are :mod:`common.eligibility` (the rules the simulator's ground truth uses too), evaluated for one
user against the whole catalog with one mask per rule (``eligibility:<rule>``) for attribution: a
user attribute that is unknown fails every rule that needs it (a product with a minimum credit
score is never offered to someone whose score we do not know).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from common.eligibility import Applicants, ProductRules, exclusion_matrix, holds_an_excluder, rule_failures
from serving.catalog import CatalogIndex
from serving.settings import FilterRules


@dataclass(frozen=True)
class UserContext:
    """What re-ranking knows about the user (from the online store; empty for an unknown user)."""

    user_id: str
    age: float | None = None
    income: float | None = None
    credit_score: float | None = None
    dti: float | None = None
    has_arrears: bool | None = None
    products_held: frozenset[str] = frozenset()
    purchased: frozenset[str] = frozenset()
    declined: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()  # full taxonomy paths of the user's established profile


def _membership(catalog: CatalogIndex, item_ids: Iterable[str]) -> np.ndarray:
    mask = np.zeros(len(catalog), dtype=bool)
    mask[catalog.rows_of(item_ids)] = True
    return mask


def _eligibility(catalog: CatalogIndex, user: UserContext) -> dict[str, np.ndarray]:
    """``eligibility:<rule>`` -> the catalog rows that rule removes (:func:`common.eligibility.rule_failures`)."""
    products = ProductRules(**catalog.rules, requires_no_arrears=catalog.requires_no_arrears)
    applicant = Applicants.one(user.age, user.income, user.credit_score, user.dti, user.has_arrears)
    # The excluder axis is just the held products that exclude anything (a handful, not the catalog).
    excluders = [held for held in user.products_held if held in catalog.excluded_by]
    excluded = np.zeros(len(catalog), dtype=bool)
    if excluders:
        matrix = exclusion_matrix(catalog.excluded_by, excluders, len(catalog))
        excluded = holds_an_excluder(matrix, np.ones(len(excluders), dtype=bool))
    failures = rule_failures(products, applicant, held=_membership(catalog, user.products_held), excluded=excluded)
    return {f"eligibility:{name}": mask for name, mask in failures.items()}


def removal_masks(
    catalog: CatalogIndex,
    user: UserContext,
    rules: FilterRules,
    in_stock: np.ndarray,
    exclude: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """Rule name -> mask of the catalog rows that rule removes (only the rules that are switched on)."""
    masks: dict[str, np.ndarray] = {"excluded_by_request": _membership(catalog, exclude)}
    if rules.out_of_stock:
        masks["out_of_stock"] = ~in_stock
    if rules.purchased:
        masks["purchased"] = _membership(catalog, user.purchased)
    if rules.declined:
        masks["declined"] = _membership(catalog, user.declined)
    if rules.eligibility:
        masks.update(_eligibility(catalog, user))
    return masks


def eligible_mask(masks: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Rows no rule removes."""
    removed = np.zeros(size, dtype=bool)
    for mask in masks.values():
        removed |= mask
    return ~removed


def removal_counts(masks: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, int]:
    """How many of ``rows`` (the candidates) each rule removed; a row failing two rules counts twice."""
    return {name: int(mask[rows].sum()) for name, mask in masks.items() if mask[rows].any()}
