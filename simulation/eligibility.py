"""Banking eligibility and responsible-lending rules of the synthetic world, evaluated vectorised.

The rules themselves -- what each catalog column means, that a missing rule (NaN here, null in the
catalog) does not restrict -- are :mod:`common.eligibility`, shared with serving's hard filter; this
module holds the world's arrays (every user's profile, every product's rules, the exclusion matrix)
and evaluates them for (user, product) index arrays of any broadcastable shape. A user is eligible
for a product when every rule passes, they do not hold it already, and they hold none of the
products that exclude it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.eligibility import Applicants, ProductRules, holds_an_excluder, passes, rule_failures

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

    @property
    def applicants(self) -> Applicants:
        return Applicants(**{name: getattr(self, name) for name in USER_FIELDS})

    @property
    def products(self) -> ProductRules:
        return ProductRules(**{name: getattr(self, name) for name in RULE_FIELDS})

    def profile_rules_pass(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Rules on the applicant's profile only (age, income, credit score, DTI, arrears)."""
        return passes(rule_failures(self.products.take(items), self.applicants.take(users)))

    def conflicts(self, held: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True where the user holds a product that excludes the item."""
        uniq, inverse = np.unique(users, return_inverse=True)
        blocked = holds_an_excluder(self.excluded_by, held[uniq])  # (distinct users, products)
        return blocked[inverse.reshape(users.shape), items]

    def failures(self, held: np.ndarray, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        """Rule name -> where it rules the product out (:data:`common.eligibility.FAILURES`)."""
        return rule_failures(
            self.products.take(items),
            self.applicants.take(users),
            held=held[users, items],
            excluded=self.conflicts(held, users, items),
        )

    def eligible(self, held: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Profile rules pass, the product is not held yet and nothing held excludes it."""
        return passes(self.failures(held, users, items))
