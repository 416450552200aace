"""The banking world: customers with financial profiles and life-stage needs, 40 regulated products.

User latent = (need per product type, scaled | premium appetite from income | noise); a customer's
need is their age band's, plus the shifts of their life events (:mod:`simulation.life_events`: half
the need variance lies inside segments, most of it from life events), plus noise; product
latent = (one-hot product type | premium tier | noise), so affinity is "do I need this kind of
product, at this tier". Initial holdings are drawn from what each customer likes AND is eligible
for, respecting exclusions, so the starting state is consistent with the lending rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.eligibility import Applicants, ProductRules
from simulation.banking_products import (
    AGE_BANDS,
    AGE_SHARE,
    NEED_BY_AGE,
    PRODUCT_TYPES,
    PRODUCTS,
    ProductSpec,
)
from simulation.eligibility import BankingRules
from simulation.life_events import SHIFTS, calibration, draw_life_events
from simulation.profiles import DomainSize
from simulation.truth import GroundTruth
from simulation.world import (
    LATENT_DIM,
    US_PER_DAY,
    World,
    arrival_times,
    device_preference,
    heavy_tailed_activity,
    make_ids,
    to_utc,
)

BANKING_PARAMS: dict[str, float] = {
    "alpha": -4.2,
    "need_scale": 2.5,
    "price_weight": 0.3,
    "owned_penalty": 4.0,
    "eta": 0.9,
    "apply0": -3.0, "apply1": 0.5,  # P(apply | view) = sigmoid(apply0 + apply1 * affinity), 0 if held
    "approve0": 0.5, "approve_scale": 50.0,  # P(approve | eligible) = sigmoid(approve0 + score margin / scale)
}
AGE_RANGE = ((18, 25), (25, 35), (35, 50), (50, 65), (65, 86))
INCOME_MEDIAN_BY_AGE = (18_000, 34_000, 45_000, 42_000, 26_000)
INCOME_BAND_EDGES = (30_000, 60_000)
INCOME_BANDS = ("<30k", "30-60k", "60k+")
NOISE_DIMS = LATENT_DIM - len(PRODUCT_TYPES) - 1
MAX_INITIAL_PRODUCTS = 4
# Products launched during the simulated period (cold-start items), as a fraction of the period.
LAUNCHES = {"Green Energy Loan": 1 / 3, "Green Saver": 1 / 2}
UNLIMITED_STOCK = 1_000_000


def _rule_sentence(p: ProductSpec) -> str:
    parts = [f"aged {p.min_age}+" if p.max_age is None else f"aged {p.min_age} to {p.max_age}"]
    if p.min_income:
        parts.append(f"with a yearly income of at least {p.min_income:,.0f}")
    if p.requires_no_arrears:
        parts.append("with no payments in arrears")
    return "Available to applicants " + " ".join(parts) + "."


def _catalog(days: int, start_us: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    n = len(PRODUCTS)
    ids = make_ids("banking", "p", n, 3)
    groups = np.array([p.group or "" for p in PRODUCTS])
    excluded_by = (groups[:, None] == groups[None, :]) & (groups[:, None] != "") & ~np.eye(n, dtype=bool)
    launched = start_us - rng.integers(365 * US_PER_DAY, 5 * 365 * US_PER_DAY, size=n)
    for k, p in enumerate(PRODUCTS):
        if p.title in LAUNCHES:
            launched[k] = start_us + int(days * LAUNCHES[p.title]) * US_PER_DAY + int(rng.integers(0, US_PER_DAY))

    def rule(name: str, dtype: str) -> pd.Series:
        return pd.Series([getattr(p, name) for p in PRODUCTS], dtype=dtype)

    catalog = pd.DataFrame({
        "item_id": ids,
        "domain": "banking",
        "title": [p.title for p in PRODUCTS],
        "description": [f"{p.title}: {p.blurb}. {_rule_sentence(p)}" for p in PRODUCTS],
        "category": [p.category for p in PRODUCTS],
        "price": [float(p.price) for p in PRODUCTS],
        "margin": [p.margin for p in PRODUCTS],
        "inventory": np.full(n, UNLIMITED_STOCK, dtype=np.int64),
        "launched_at": to_utc(launched),
        "brand": "Bank",
        "product_type": [p.product_type for p in PRODUCTS],
        "min_age": rule("min_age", "Int32"),
        "max_age": rule("max_age", "Int32"),
        "min_income": rule("min_income", "float64"),
        "min_credit_score": rule("min_credit_score", "Int32"),
        "max_dti": rule("max_dti", "float64"),
        "requires_no_arrears": [p.requires_no_arrears for p in PRODUCTS],
        "excludes": [[str(ids[q]) for q in np.flatnonzero(excluded_by[k])] or None for k in range(n)],
    })
    return catalog, excluded_by, launched


def _rules(users: dict[str, np.ndarray], catalog: pd.DataFrame, excluded_by: np.ndarray) -> BankingRules:
    applicants = Applicants(age=users["age"].astype(np.float64), income=users["income"],
                            credit_score=users["credit_score"].astype(np.float64), dti=users["dti"],
                            has_arrears=users["has_arrears"])
    return BankingRules(applicants, ProductRules.from_catalog(catalog), excluded_by)


def _customers(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    band = rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARE)
    low, high = (np.array(AGE_RANGE)[band, j] for j in (0, 1))
    age = rng.integers(low, high)
    income = np.round(rng.lognormal(np.log(np.array(INCOME_MEDIAN_BY_AGE)[band]), 0.55), -2)
    z_income = np.log(income / 40_000)
    score = 600 + 25 * band + 45 * z_income + rng.normal(0, 60, size=n)
    credit_score = np.clip(np.round(score), 300, 850).astype(np.int32)
    dti = np.round(np.clip(rng.beta(2, 5, size=n) * 0.9 - 0.05 * z_income, 0.0, 1.5), 3)
    arrears = rng.random(n) < 1 / (1 + np.exp(3.0 + (credit_score - 650) / 40))
    income_band = np.searchsorted(np.array(INCOME_BAND_EDGES), income, side="right")
    return {"age": age.astype(np.int32), "age_band": band, "income": income, "credit_score": credit_score,
            "dti": dti, "has_arrears": arrears, "segment": (band * len(INCOME_BANDS) + income_band).astype(np.int16),
            "z_income": z_income}


def _initial_holdings(truth: GroundTruth, start_us: int, rng: np.random.Generator) -> np.ndarray:
    """Customers of the start day hold 0-4 products: greedy picks by affinity + noise among eligible
    products launched before the start; customers who join later start with none."""
    n_users, n_items = len(truth.user_ids), len(truth.item_ids)
    wanted = np.minimum(rng.poisson(1.3, size=n_users), MAX_INITIAL_PRODUCTS) * (truth.signed_up_us < start_us)
    launched_before = (truth.launched_us < start_us)[None, :]
    users, items = np.arange(n_users)[:, None], np.arange(n_items)[None, :]
    for rank in range(MAX_INITIAL_PRODUCTS):
        score = truth.affinity_idx(users, items) + truth.item_bias + rng.gumbel(size=(n_users, n_items))
        ok = truth.eligible_idx(users, items) & launched_before & (wanted > rank)[:, None]
        score = np.where(ok, score, -np.inf)
        best = score.argmax(axis=1)
        chosen = np.isfinite(score[np.arange(n_users), best])
        truth.held[np.flatnonzero(chosen), best[chosen]] = True
    return truth.held.copy()


def build_banking_world(size: DomainSize, days: int, start_us: int, rng: np.random.Generator) -> World:
    if size.items != len(PRODUCTS) or size.new_items_per_day:
        raise ValueError(f"the bank has exactly {len(PRODUCTS)} products (launches are fixed)")
    catalog, excluded_by, launched = _catalog(days, start_us, rng)
    n = size.users + size.new_users_per_day * days
    cust = _customers(n, rng)
    type_index = np.array([PRODUCT_TYPES.index(p.product_type) for p in PRODUCTS])
    shift_scale, need_noise = calibration(days)
    life = draw_life_events(n, start_us, days, rng)
    need = np.array(NEED_BY_AGE)[cust["age_band"]] + rng.normal(0, need_noise, size=(n, len(PRODUCT_TYPES)))
    premium = 0.8 * cust["z_income"] + rng.normal(0, 0.3, size=n)
    user_vec = np.hstack([BANKING_PARAMS["need_scale"] * need, premium[:, None], 0.4 * rng.normal(size=(n, NOISE_DIMS))])
    life_shift = np.zeros((len(SHIFTS), user_vec.shape[1]))
    life_shift[:, : len(PRODUCT_TYPES)] = BANKING_PARAMS["need_scale"] * shift_scale * SHIFTS
    tier = np.array([p.tier for p in PRODUCTS])
    item_vec = np.hstack([np.eye(len(PRODUCT_TYPES))[type_index], 2 * (tier - 0.5)[:, None],
                          0.4 * rng.normal(size=(len(PRODUCTS), NOISE_DIMS))])
    price = catalog["price"].to_numpy()
    signed_up = arrival_times(size.users, size.new_users_per_day, days, start_us, 3650, rng)
    truth = GroundTruth(
        domain="banking",
        params=dict(BANKING_PARAMS),
        segment_names=np.array([f"{a}|{i}" for a in AGE_BANDS for i in INCOME_BANDS]),
        user_ids=make_ids("banking", "u", n, 6),
        user_vec=user_vec.astype(np.float32),
        price_sensitivity=np.exp(-0.5 * cust["z_income"]) * rng.lognormal(0.0, 0.3, size=n),
        activity=heavy_tailed_activity(n, size.sessions_per_user_day, rng),
        device_preference=device_preference(n, rng),
        user_segment=cust["segment"],
        signed_up_us=signed_up,
        item_ids=catalog["item_id"].to_numpy(dtype=str),
        item_vec=item_vec.astype(np.float32),
        item_bias=rng.normal(0, 0.4, size=len(PRODUCTS)),
        price=price,
        price_term=np.log1p(price) / 3.0,
        in_stock=np.ones(len(PRODUCTS), dtype=bool),
        launched_us=launched,
        purchased=np.zeros(0, dtype=np.int64),
        held_initial=np.zeros((n, len(PRODUCTS)), dtype=bool),
        held=np.zeros((n, len(PRODUCTS)), dtype=bool),
        rules=_rules(cust, catalog, excluded_by),
        user_vec_base=user_vec.astype(np.float32),
        life_user=life.user,
        life_kind=life.kind,
        life_at_us=life.at_us,
        life_shift=life_shift.astype(np.float32),
    )
    truth.advance_to(start_us)
    truth.held_initial = _initial_holdings(truth, start_us, rng)
    users = pd.DataFrame({
        "user_id": truth.user_ids,
        "domain": "banking",
        "signed_up_at": to_utc(signed_up),
        "age_band": np.array(AGE_BANDS)[cust["age_band"]],
        "age": cust["age"],
        "income": cust["income"],
        "credit_score": cust["credit_score"],
        "dti": cust["dti"],
        "has_arrears": cust["has_arrears"],
    })
    return World(users=users, catalog=catalog, truth=truth)
