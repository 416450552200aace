"""The synthetic world's hidden truth: what every user really likes and how they really behave.

Later components use it to judge recommendations (true relevance, conversion probabilities), to
prove position-bias correction (the true examination curve) and to answer arbitrary served slates
in closed-loop A/B tests (:func:`simulation.behavior.respond`).

The behaviour model, for user ``u`` and item ``i``::

    affinity(u, i)   = user_vec[u] . item_vec[i]
    relevance(u, i)  = sigmoid(alpha + affinity + item_bias[i] - price_weight * price_sens[u] * price_term[i]
                               - owned_penalty * owned(u, i))                  # P(click | examined)
    examination(pos) = 1 / pos ** eta                                           # P(examined | shown at pos)

``owned`` is a purchased retail item or a held banking product. Retail: a view leads to add-to-cart
with :meth:`GroundTruth.cart_probability` and a cart to a purchase with
:meth:`GroundTruth.checkout_probability` (never for out-of-stock or already purchased items).
Banking: a view leads to an application with :meth:`GroundTruth.application_probability`, which is
approved with :meth:`GroundTruth.approval_probability` -- zero for an ineligible applicant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.paths import DataPaths
from simulation.eligibility import BankingRules

TRUTH_FILE = "truth.npz"
META_FILE = "truth.json"
_BANK_PREFIX = "bank_"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def examination(positions: np.ndarray | list[int], eta: float) -> np.ndarray:
    """P(a user examines slot ``position``) = 1 / position ** eta (positions start at 1)."""
    pos = np.asarray(positions, dtype=np.float64)
    if np.any(pos < 1):
        raise ValueError("positions start at 1")
    return pos ** (-eta)


@dataclass
class GroundTruth:
    """Hidden state of one domain. Arrays are indexed by user / item position in ``user_ids``/``item_ids``.

    Public methods take id arrays of any (matching or broadcastable) shape and return arrays of that shape.
    """

    domain: str
    params: dict[str, float]
    segment_names: np.ndarray
    user_ids: np.ndarray
    user_vec: np.ndarray
    price_sensitivity: np.ndarray
    activity: np.ndarray
    device_preference: np.ndarray
    user_segment: np.ndarray
    signed_up_us: np.ndarray
    item_ids: np.ndarray
    item_vec: np.ndarray
    item_bias: np.ndarray
    price: np.ndarray
    price_term: np.ndarray
    in_stock: np.ndarray
    launched_us: np.ndarray
    purchased: np.ndarray  # retail: sorted keys user_index * n_items + item_index
    held_initial: np.ndarray  # banking: (users, items) products held at the start
    held: np.ndarray  # banking: products held now
    rules: BankingRules | None = None
    # banking: needs before life events, and the events (simulation.life_events); user_vec follows them
    user_vec_base: np.ndarray | None = None
    life_user: np.ndarray | None = None  # (events,) user index
    life_kind: np.ndarray | None = None  # (events,) kind index
    life_at_us: np.ndarray | None = None  # (events,) when
    life_shift: np.ndarray | None = None  # (kinds, latent dims): what each kind adds to user_vec
    _user_index: pd.Index | None = field(default=None, init=False, repr=False)
    _item_index: pd.Index | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ ids

    def user_index(self, user_ids: Any) -> np.ndarray:
        if self._user_index is None:
            self._user_index = pd.Index(self.user_ids)
        return _lookup(self._user_index, user_ids, "user")

    def item_index(self, item_ids: Any) -> np.ndarray:
        if self._item_index is None:
            self._item_index = pd.Index(self.item_ids)
        return _lookup(self._item_index, item_ids, "item")

    def _pair(self, user_ids: Any, item_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        u, i = np.broadcast_arrays(self.user_index(user_ids), self.item_index(item_ids))
        return u, i

    def advance_to(self, now_us: int) -> None:
        """Set ``user_vec`` to the needs as of ``now_us``: the base vectors plus the shifts of the life
        events that have happened by then (a world without life events is left as it is)."""
        if self.user_vec_base is None or self.life_at_us is None:
            return
        vec = self.user_vec_base.astype(np.float64)
        happened = self.life_at_us < now_us
        np.add.at(vec, self.life_user[happened], self.life_shift[self.life_kind[happened]])
        self.user_vec = vec.astype(np.float32)

    # ------------------------------------------------------------------ behaviour on indices

    def affinity_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.einsum("...d,...d->...", self.user_vec[u], self.item_vec[i])

    def owned_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.domain == "banking":
            return self.held[u, i]
        keys = u.astype(np.int64) * len(self.item_ids) + i
        if len(self.purchased) == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.searchsorted(self.purchased, keys)
        return (pos < len(self.purchased)) & (self.purchased[np.minimum(pos, len(self.purchased) - 1)] == keys)

    def relevance_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        p = self.params
        logit = (
            p["alpha"] + self.affinity_idx(u, i) + self.item_bias[i]
            - p["price_weight"] * self.price_sensitivity[u] * self.price_term[i]
            - p["owned_penalty"] * self.owned_idx(u, i)
        )
        return sigmoid(logit)

    def cart_probability_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        p = self.params
        logit = p["cart0"] + p["cart1"] * self.affinity_idx(u, i) - p["cart_price"] * self.price_sensitivity[u] * self.price_term[i]
        return sigmoid(logit) * self.in_stock[i] * ~self.owned_idx(u, i)

    def checkout_probability_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        p = self.params
        logit = (p["checkout0"] + p["checkout1"] * self.affinity_idx(u, i)
                 - p["checkout_price"] * self.price_sensitivity[u] * self.price_term[i])
        return sigmoid(logit) * self.in_stock[i]

    def application_probability_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        p = self.params
        return sigmoid(p["apply0"] + p["apply1"] * self.affinity_idx(u, i)) * ~self.held[u, i]

    def eligible_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self._rules().eligible(self.held, u, i)

    def approval_probability_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        rules = self._rules()
        floor = np.where(np.isnan(rules.products.min_credit_score[i]), 300.0, rules.products.min_credit_score[i])
        margin = (rules.applicants.credit_score[u] - floor) / self.params["approve_scale"]
        return sigmoid(self.params["approve0"] + margin) * self.eligible_idx(u, i)

    def decline_probability_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Retail: P(the user dismisses an examined, unclicked item) -- only low-relevance items."""
        rel = self.relevance_idx(u, i)
        return self.params["decline_rate"] * np.exp(-rel / self.params["decline_scale"])

    # ------------------------------------------------------------------ public, id-based

    def examination(self, positions: np.ndarray | list[int]) -> np.ndarray:
        return examination(positions, self.params["eta"])

    def relevance(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """P(click | examined) for each (user, item) pair."""
        return self.relevance_idx(*self._pair(user_ids, item_ids))

    def purchase_probability(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Retail: P(purchase | click) = P(add to cart | view) * P(checkout | cart)."""
        self._require("retail")
        u, i = self._pair(user_ids, item_ids)
        return self.cart_probability_idx(u, i) * self.checkout_probability_idx(u, i)

    def eligible(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Banking: True where the user may be approved for the product now."""
        return self.eligible_idx(*self._pair(user_ids, item_ids))

    def approval_probability(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Banking: P(approved | applied); 0 for every ineligible applicant."""
        return self.approval_probability_idx(*self._pair(user_ids, item_ids))

    def application_probability(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Banking: P(application started | product page viewed)."""
        self._require("banking")
        return self.application_probability_idx(*self._pair(user_ids, item_ids))

    def conversion_probability(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """The domain's conversion given a click: retail purchase, banking approved application."""
        if self.domain == "retail":
            return self.purchase_probability(user_ids, item_ids)
        u, i = self._pair(user_ids, item_ids)
        return self.application_probability_idx(u, i) * self.approval_probability_idx(u, i)

    # ------------------------------------------------------------------ state

    def record_purchases(self, u: np.ndarray, i: np.ndarray) -> None:
        keys = u.astype(np.int64) * len(self.item_ids) + i
        self.purchased = np.union1d(self.purchased, keys)

    def record_approvals(self, u: np.ndarray, i: np.ndarray) -> None:
        self.held[u, i] = True

    def _rules(self) -> BankingRules:
        self._require("banking")
        assert self.rules is not None
        return self.rules

    def _require(self, domain: str) -> None:
        if self.domain != domain:
            raise ValueError(f"this method applies to the {domain} domain, not {self.domain}")

    # ------------------------------------------------------------------ persistence

    def save(self, paths: DataPaths) -> Path:
        folder = paths.world(self.domain)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        if self.rules is not None:
            arrays.update({_BANK_PREFIX + k: v for k, v in self.rules.arrays().items()})
        np.savez_compressed(folder / TRUTH_FILE, **arrays)
        (folder / META_FILE).write_text(json.dumps({"domain": self.domain, "params": self.params}, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, paths: DataPaths, domain: str) -> GroundTruth:
        folder = paths.world(domain)
        meta = json.loads((folder / META_FILE).read_text())
        with np.load(folder / TRUTH_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        bank = {k[len(_BANK_PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(_BANK_PREFIX)}
        rules = BankingRules.from_arrays(bank) if bank else None
        return cls(domain=meta["domain"], params=meta["params"], rules=rules, **arrays)


def _lookup(index: pd.Index, ids: Any, kind: str) -> np.ndarray:
    values = np.asarray(ids)
    flat = index.get_indexer(values.ravel())
    if (flat < 0).any():
        unknown = values.ravel()[flat < 0][0]
        raise KeyError(f"unknown {kind} id {unknown!r} in the synthetic world")
    return flat.reshape(values.shape)
