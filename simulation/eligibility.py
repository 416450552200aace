"""Banking eligibility and responsible-lending rules of the synthetic world, evaluated vectorised.

The rules themselves -- what each catalog column means, that a missing rule (NaN here, null in the
catalog) does not restrict -- are :mod:`common.eligibility`, shared with serving's hard filter; this
module holds the world's arrays (every user's profile, every product's rules, the exclusion matrix)
and evaluates them for (user, product) index arrays of any broadcastable shape. A user is eligible
for a product when every rule passes, they do not hold it already, and they hold none of the
products that exclude it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from common.eligibility import Applicants, ProductRules, holds_an_excluder, passes, rule_failures


@dataclass(frozen=True)
class BankingRules:
    """Every user's attributes, every product's rules and the exclusion matrix.

    ``excluded_by[p, q]`` is True when holding product ``q`` rules out product ``p``.
    """

    applicants: Applicants
    products: ProductRules
    excluded_by: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array (the attributes', the rules' and ``excluded_by``), for saving; see :meth:`from_arrays`."""
        return {**{f.name: getattr(self.applicants, f.name) for f in fields(Applicants)},
                **{f.name: getattr(self.products, f.name) for f in fields(ProductRules)}, "excluded_by": self.excluded_by}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BankingRules:
        return cls(Applicants(**{f.name: arrays[f.name] for f in fields(Applicants)}),
                   ProductRules(**{f.name: arrays[f.name] for f in fields(ProductRules)}), arrays["excluded_by"])

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
