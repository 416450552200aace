"""Banking eligibility and responsible-lending rules, evaluated vectorised.

A product's rules are the catalog columns of :mod:`common.schemas` (``min_age``, ``max_age``,
``min_income``, ``min_credit_score``, ``max_dti``, ``requires_no_arrears``, ``excludes``); a missing
rule (NaN here, null in the catalog) does not restrict. A user is eligible for a product when every
rule passes, they do not hold it already, and they hold none of the products that exclude it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

USER_FIELDS = ("age", "income", "credit_score", "dti", "has_arrears")
RULE_FIELDS = ("min_age", "max_age", "min_income", "min_credit_score", "max_dti", "requires_no_arrears")


@dataclass
class BankingRules:
    """Per-user attributes, per-product rules and the exclusion matrix.

    ``excluded_by[p, q]`` is True when holding product ``q`` rules out product ``p``.
    """

    age: np.ndarray
    income: np.ndarray
    credit_score: np.ndarray
    dti: np.ndarray
    has_arrears: np.ndarray
    min_age: np.ndarray
    max_age: np.ndarray
    min_income: np.ndarray
    min_credit_score: np.ndarray
    max_dti: np.ndarray
    requires_no_arrears: np.ndarray
    excluded_by: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (*USER_FIELDS, *RULE_FIELDS, "excluded_by")}

    def profile_rules_pass(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Rules on the applicant's profile only (age, income, credit score, DTI, arrears)."""

        def at_least(value: np.ndarray, floor: np.ndarray) -> np.ndarray:
            return np.isnan(floor) | (value >= floor)

        def at_most(value: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
            return np.isnan(ceiling) | (value <= ceiling)

        return (
            at_least(self.age[users], self.min_age[items])
            & at_most(self.age[users], self.max_age[items])
            & at_least(self.income[users], self.min_income[items])
            & at_least(self.credit_score[users], self.min_credit_score[items])
            & at_most(self.dti[users], self.max_dti[items])
            & ~(self.requires_no_arrears[items] & self.has_arrears[users])
        )

    def conflicts(self, held: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True where the user holds a product that excludes the item."""
        uniq, inverse = np.unique(users, return_inverse=True)
        blocked = (held[uniq].astype(np.int32) @ self.excluded_by.T.astype(np.int32)) > 0  # (users, items)
        return blocked[inverse.reshape(users.shape), items]

    def eligible(self, held: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Profile rules pass, the product is not held yet and nothing held excludes it."""
        return self.profile_rules_pass(users, items) & ~held[users, items] & ~self.conflicts(held, users, items)
