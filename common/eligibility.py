"""Banking eligibility and responsible-lending rules: the one definition the simulator and serving share.

The simulator's ground truth (:mod:`simulation.eligibility`, many users x products) and serving's
hard filter (:mod:`serving.eligibility`, one user x the catalog, with per-rule attribution) must
never disagree on who may get a product, so both call :func:`rule_failures` here. The semantics:

- a rule that is not set (null in the catalog, NaN here) does not restrict;
- a user value that is unknown (None upstream, NaN here) fails every *set* rule that needs it: a
  product with a minimum credit score is never offered to someone whose score is unknown, and one
  that requires no arrears is never offered to someone whose arrears status is unknown;
- a user may not get a product they already hold, nor one that a product they hold excludes.

Rules are the catalog columns of :class:`common.schemas.CatalogItem` (``min_age``, ``max_age``,
``min_income``, ``min_credit_score``, ``max_dti``, ``requires_no_arrears``, ``excludes``);
:meth:`ProductRules.from_catalog` and :func:`parse_excludes` turn a catalog table into the arrays
the evaluation needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

# rule -> the user attribute it bounds; floors first, then ceilings (the attribution order).
FLOORS: Mapping[str, str] = {"min_age": "age", "min_income": "income", "min_credit_score": "credit_score"}
CEILINGS: Mapping[str, str] = {"max_age": "age", "max_dti": "dti"}
NUMERIC_RULES = (*FLOORS, *CEILINGS)
# Names of the failure masks :func:`rule_failures` returns, in this order.
FAILURES = (*NUMERIC_RULES, "arrears", "excludes", "already_held")


@dataclass(frozen=True)
class ProductRules:
    """Per-product rule arrays: the numeric bounds (float, NaN = not set) and the arrears flag (bool)."""

    min_age: np.ndarray
    max_age: np.ndarray
    min_income: np.ndarray
    min_credit_score: np.ndarray
    max_dti: np.ndarray
    requires_no_arrears: np.ndarray

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame) -> ProductRules:
        """Rules of every catalog row; a missing column or a null value means "not set"."""
        n = len(catalog)

        def bound(name: str) -> np.ndarray:
            if name not in catalog:
                return np.full(n, np.nan)
            return pd.to_numeric(catalog[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

        arrears = catalog["requires_no_arrears"] if "requires_no_arrears" in catalog else pd.Series([False] * n)
        return cls(
            **{name: bound(name) for name in NUMERIC_RULES},
            requires_no_arrears=arrears.astype("boolean").fillna(False).to_numpy(dtype=bool),
        )

    def take(self, products: np.ndarray) -> ProductRules:
        """The rules of the products at these positions (any shape, for broadcasting against users)."""
        return ProductRules(**{f.name: getattr(self, f.name)[products] for f in fields(self)})


@dataclass(frozen=True)
class Applicants:
    """User attributes the rules read: float arrays with NaN for unknown; ``has_arrears`` is bool, or
    float (1 / 0 / NaN) where it may be unknown."""

    age: np.ndarray
    income: np.ndarray
    credit_score: np.ndarray
    dti: np.ndarray
    has_arrears: np.ndarray

    @classmethod
    def one(
        cls,
        age: float | None,
        income: float | None,
        credit_score: float | None,
        dti: float | None,
        has_arrears: bool | None,
    ) -> Applicants:
        """A single applicant (numpy scalars, so the masks take the products' shape); None is unknown."""

        def value(x: float | bool | None) -> np.ndarray:
            return np.float64(np.nan if x is None else x)  # type: ignore[return-value]  (a 0-d value)

        return cls(value(age), value(income), value(credit_score), value(dti), value(has_arrears))

    def take(self, users: np.ndarray) -> Applicants:
        """The applicants at these positions (any shape, for broadcasting against products)."""
        return Applicants(**{f.name: getattr(self, f.name)[users] for f in fields(self)})


def rule_failures(
    rules: ProductRules,
    applicants: Applicants,
    *,
    held: np.ndarray | bool = False,
    excluded: np.ndarray | bool = False,
) -> dict[str, np.ndarray]:
    """Rule name (:data:`FAILURES`) -> where that rule rules the product out, for every pair.

    ``rules`` and ``applicants`` hold arrays that broadcast against each other (products along one
    axis, users along another, or aligned pairs); ``held`` marks pairs where the user already holds
    the product and ``excluded`` pairs where they hold a product that excludes it (see
    :func:`holds_an_excluder`). A pair is eligible when no mask is True (:func:`passes`).
    """
    failures: dict[str, np.ndarray] = {}
    # Comparisons with NaN are False: an unknown value fails every rule that is set.
    for rule, attribute in FLOORS.items():
        bound = getattr(rules, rule)
        failures[rule] = ~np.isnan(bound) & ~(getattr(applicants, attribute) >= bound)
    for rule, attribute in CEILINGS.items():
        bound = getattr(rules, rule)
        failures[rule] = ~np.isnan(bound) & ~(getattr(applicants, attribute) <= bound)
    failures["arrears"] = rules.requires_no_arrears & ~(applicants.has_arrears == 0)  # NaN == 0 is False
    failures["excludes"] = np.asarray(excluded, dtype=bool)
    failures["already_held"] = np.asarray(held, dtype=bool)
    return failures


def passes(failures: Mapping[str, np.ndarray]) -> np.ndarray:
    """True where no rule fails (the masks broadcast to one shape)."""
    failed = np.zeros(np.broadcast_shapes(*(np.shape(m) for m in failures.values())), dtype=bool)
    for mask in failures.values():
        failed |= mask
    return ~failed


def holds_an_excluder(excluded_by: np.ndarray, holdings: np.ndarray) -> np.ndarray:
    """Where a user holds a product that excludes the product: ``(..., products)`` bool.

    ``excluded_by[p, q]`` is True when holding excluder ``q`` rules out product ``p``; ``holdings``
    is ``(..., excluders)`` bool. The excluder axis may be the products themselves (the simulator's
    square matrix) or just the excluders one user holds (serving).
    """
    # A float32 product runs on BLAS (several times faster than integer or bool matmul) and counts
    # exactly up to 2**24 excluders.
    return (holdings.astype(np.float32) @ excluded_by.T.astype(np.float32)) > 0


def parse_excludes(excludes: Iterable[Iterable[str] | None]) -> dict[str, np.ndarray]:
    """The catalog's ``excludes`` column -> excluder id -> bool mask of the products it rules out.

    Row ``p`` listing ``q`` means a holder of ``q`` may not get ``p``; excluder ids need not be in
    the catalog themselves (a held product that was withdrawn still excludes).
    """
    lists = list(excludes)
    masks: dict[str, np.ndarray] = {}
    for row, listed in enumerate(lists):
        if isinstance(listed, str) or not isinstance(listed, Iterable):  # None / NaN / a stray scalar
            continue
        for excluder in listed:
            masks.setdefault(str(excluder), np.zeros(len(lists), dtype=bool))[row] = True
    return masks


def exclusion_matrix(masks: Mapping[str, np.ndarray], excluder_ids: Iterable[str], products: int) -> np.ndarray:
    """``(products, excluders)`` bool matrix of :func:`parse_excludes` masks, columns in ``excluder_ids``
    order (an id that excludes nothing gets an all-False column)."""
    columns = [masks.get(excluder, np.zeros(products, dtype=bool)) for excluder in excluder_ids]
    return np.column_stack(columns) if columns else np.zeros((products, 0), dtype=bool)
