"""The retail world: shoppers with hidden tastes and a catalog whose text reflects item latents.

Latent structure: every department, level-2 category, level-3 category and brand has a random
vector; an item's vector is a weighted sum of its own (so similar categories have similar items)
plus noise. A shopper's taste mixes one or two favourite departments (drawn from their demographic
segment's preferences) and a favourite sub-category. Description words have vectors too, and each
item's text uses the words closest to its own vector, so text carries signal about the latents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulation.profiles import DomainSize
from simulation.taxonomy import AGE_BANDS, COUNTRIES, DEPARTMENTS, GENERAL_WORDS
from simulation.text import brand_names, model_codes, retail_description, retail_title
from simulation.truth import GroundTruth
from simulation.world import (
    LATENT_DIM,
    World,
    arrival_times,
    device_preference,
    heavy_tailed_activity,
    make_ids,
    normalise_rows,
    to_utc,
)

RETAIL_PARAMS: dict[str, float] = {
    "alpha": -4.6,  # relevance intercept
    "affinity_scale": 5.0,  # affinity = affinity_scale * cosine(taste, item)
    "price_weight": 0.5,
    "owned_penalty": 3.0,  # a purchased item is rarely clicked again
    "eta": 0.9,  # examination = 1 / position ** eta
    "cart0": -3.2, "cart1": 0.4, "cart_price": 0.8,
    "checkout0": -0.8, "checkout1": 0.2, "checkout_price": 0.6,
    "decline_rate": 0.03, "decline_scale": 0.04,
    "zipf_exponent": 0.5,  # item appeal bias = -zipf_exponent * log(appeal rank)
}
BRANDS_PER_DEPARTMENT = 8
FEATURE_WORDS = 4
GENERAL_WORDS_PER_ITEM = 2
WORD_TEMPERATURE = 6.0
COUNTRY_SHARE = (0.35, 0.2, 0.18, 0.15, 0.12)
AGE_SHARE = (0.18, 0.32, 0.3, 0.2)
AGE_PRICE_SENSITIVITY = (1.3, 1.0, 0.85, 0.95)


def _leaves() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Flattened taxonomy: per leaf its department index, level-2 index, leaf name and full path."""
    dept, l2, names, paths = [], [], [], []
    l2_index = 0
    for d, department in enumerate(DEPARTMENTS):
        for sub, leaves in department.subcategories.items():
            for leaf in leaves:
                dept.append(d)
                l2.append(l2_index)
                names.append(leaf)
                paths.append(f"{department.name}>{sub}>{leaf}")
            l2_index += 1
    return np.array(dept), np.array(l2), names, paths


def _top_k_gumbel(logits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sample k distinct columns per row without replacement, proportionally to softmax(logits)."""
    noisy = logits + rng.gumbel(size=logits.shape)
    return np.argsort(-noisy, axis=1)[:, :k]


def _catalog(size: DomainSize, days: int, start_us: int, rng: np.random.Generator,
             centres: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    leaf_dept, leaf_l2, leaf_names, leaf_paths = _leaves()
    n = size.items + size.new_items_per_day * days
    leaf = rng.choice(len(leaf_names), size=n, p=rng.dirichlet(np.full(len(leaf_names), 2.0)))
    dept = leaf_dept[leaf]
    brand = dept * BRANDS_PER_DEPARTMENT + rng.integers(0, BRANDS_PER_DEPARTMENT, size=n)
    raw = (centres["dept"][dept] + 0.8 * centres["l2"][leaf_l2[leaf]] + 0.6 * centres["leaf"][leaf]
           + 0.4 * centres["brand"][brand] + 0.5 * rng.normal(size=(n, LATENT_DIM)))
    unit = normalise_rows(raw)

    median = np.array([d.median_price for d in DEPARTMENTS])[dept]
    leaf_offset = rng.normal(0.0, 0.25, size=len(leaf_names))[leaf]
    price = np.maximum(np.round(median * np.exp(leaf_offset + rng.normal(0.0, 0.45, size=n)), 2), 1.99)
    low, high = (np.array([d.margin[j] for d in DEPARTMENTS])[dept] for j in (0, 1))
    inventory = np.where(rng.random(n) < 0.06, 0, rng.negative_binomial(2, 0.04, size=n) + 1)
    appeal_rank = rng.permutation(n) + 1
    bias = -RETAIL_PARAMS["zipf_exponent"] * np.log(appeal_rank)

    word_vec = normalise_rows(np.repeat(centres["dept"], len(DEPARTMENTS[0].words), axis=0)
                              + rng.normal(size=(len(DEPARTMENTS) * len(DEPARTMENTS[0].words), LATENT_DIM)))
    word_vec = word_vec.reshape(len(DEPARTMENTS), -1, LATENT_DIM)
    general_vec = normalise_rows(rng.normal(size=(len(GENERAL_WORDS), LATENT_DIM)))
    features = _top_k_gumbel(WORD_TEMPERATURE * np.einsum("nd,nwd->nw", unit, word_vec[dept]), FEATURE_WORDS, rng)
    general = _top_k_gumbel(WORD_TEMPERATURE * unit @ general_vec.T, GENERAL_WORDS_PER_ITEM, rng)

    brands = brand_names(len(DEPARTMENTS) * BRANDS_PER_DEPARTMENT, rng)
    codes = model_codes(n, rng)
    price_term = np.log(price / median)
    titles, descriptions = [], []
    for k in range(n):
        department = DEPARTMENTS[dept[k]]
        words = [department.words[w] for w in features[k]]
        sub = leaf_paths[leaf[k]].split(">")[1]
        titles.append(retail_title(brands[brand[k]], words[0], leaf_names[leaf[k]], department.noun, codes[k]))
        descriptions.append(retail_description(brands[brand[k]], leaf_names[leaf[k]], sub, department.name, words,
                                               [GENERAL_WORDS[g] for g in general[k]], float(price_term[k])))
    launched = arrival_times(size.items, size.new_items_per_day, days, start_us, 365, rng)
    catalog = pd.DataFrame({
        "item_id": make_ids("retail", "i", n, 5),
        "domain": "retail",
        "title": titles,
        "description": descriptions,
        "category": np.array(leaf_paths)[leaf],
        "price": price,
        "margin": np.round(rng.uniform(low, high), 3),
        "inventory": inventory.astype(np.int64),
        "launched_at": to_utc(launched),
        "brand": np.array(brands)[brand],
    })
    hidden = {"unit": unit, "bias": bias - bias.mean(), "price": price, "price_term": price_term,
              "in_stock": inventory > 0, "launched_us": launched}
    return catalog, hidden


def _users(size: DomainSize, days: int, start_us: int, rng: np.random.Generator,
           centres: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n = size.users + size.new_users_per_day * days
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARE)
    age = rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARE)
    segment = country * len(AGE_BANDS) + age
    n_segments = len(COUNTRIES) * len(AGE_BANDS)
    segment_taste = rng.dirichlet(np.full(len(DEPARTMENTS), 0.7), size=n_segments)
    cumulative = segment_taste.cumsum(axis=1)[segment]
    first, second = ((cumulative < rng.random((n, 1))).sum(axis=1) for _ in range(2))
    first, second = np.minimum(first, len(DEPARTMENTS) - 1), np.minimum(second, len(DEPARTMENTS) - 1)
    subs_per_dept = len(DEPARTMENTS[0].subcategories)
    favourite_sub = first * subs_per_dept + rng.integers(0, subs_per_dept, size=n)
    taste = normalise_rows(centres["dept"][first] + 0.6 * centres["dept"][second]
                           + 0.6 * centres["l2"][favourite_sub] + 0.7 * rng.normal(size=(n, LATENT_DIM)))
    signed_up = arrival_times(size.users, size.new_users_per_day, days, start_us, 730, rng)
    users = pd.DataFrame({
        "user_id": make_ids("retail", "u", n, 6),
        "domain": "retail",
        "signed_up_at": to_utc(signed_up),
        "country": np.array(COUNTRIES)[country],
        "age_band": np.array(AGE_BANDS)[age],
    })
    hidden = {
        "taste": taste,
        "price_sensitivity": rng.lognormal(0.0, 0.35, size=n) * np.array(AGE_PRICE_SENSITIVITY)[age],
        "activity": heavy_tailed_activity(n, size.sessions_per_user_day, rng),
        "device": device_preference(n, rng),
        "segment": segment.astype(np.int16),
        "signed_up_us": signed_up,
    }
    return users, hidden


def build_retail_world(size: DomainSize, days: int, start_us: int, rng: np.random.Generator) -> World:
    n_l2 = sum(len(d.subcategories) for d in DEPARTMENTS)
    centres = {
        "dept": rng.normal(size=(len(DEPARTMENTS), LATENT_DIM)),
        "l2": rng.normal(size=(n_l2, LATENT_DIM)),
        "leaf": rng.normal(size=(len(_leaves()[2]), LATENT_DIM)),
        "brand": rng.normal(size=(len(DEPARTMENTS) * BRANDS_PER_DEPARTMENT, LATENT_DIM)),
    }
    catalog, item = _catalog(size, days, start_us, rng, centres)
    users, user = _users(size, days, start_us, rng, centres)
    scale = np.sqrt(RETAIL_PARAMS["affinity_scale"])
    truth = GroundTruth(
        domain="retail",
        params=dict(RETAIL_PARAMS),
        segment_names=np.array([f"{c}|{a}" for c in COUNTRIES for a in AGE_BANDS]),
        user_ids=users["user_id"].to_numpy(dtype=str),
        user_vec=(scale * user["taste"]).astype(np.float32),
        price_sensitivity=user["price_sensitivity"],
        activity=user["activity"],
        device_preference=user["device"],
        user_segment=user["segment"],
        signed_up_us=user["signed_up_us"],
        item_ids=catalog["item_id"].to_numpy(dtype=str),
        item_vec=(scale * item["unit"]).astype(np.float32),
        item_bias=item["bias"],
        price=item["price"],
        price_term=item["price_term"],
        in_stock=item["in_stock"],
        launched_us=item["launched_us"],
        purchased=np.zeros(0, dtype=np.int64),
        held_initial=np.zeros((0, 0), dtype=bool),
        held=np.zeros((0, 0), dtype=bool),
    )
    return World(users=users, catalog=catalog, truth=truth)
