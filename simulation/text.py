"""Generated brand names, titles and descriptions for the retail catalog.

The words an item's text uses are chosen elsewhere from its latent vector (see
:mod:`simulation.retail_world`); this module only turns those choices into readable strings.
"""

from __future__ import annotations

import numpy as np

from simulation.taxonomy import BRAND_SYLLABLES


def brand_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable brand names ("Velka", "Zendor", ...)."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        parts = rng.choice(BRAND_SYLLABLES, size=int(rng.integers(2, 4)))
        name = "".join(parts).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _listing(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def retail_title(brand: str, lead: str, leaf: str, noun: str, model: str) -> str:
    return f"{brand} {lead.capitalize()} {leaf} {noun} {model}"


def retail_description(brand: str, leaf: str, subcategory: str, department: str, features: list[str],
                       general: list[str], price_term: float) -> str:
    """A few sentences naming the category path, feature words and a price-position phrase."""
    price_phrase = (
        " A premium choice built to last." if price_term > 0.5
        else " Great value for everyday use." if price_term < -0.4
        else ""
    )
    return (
        f"{' '.join(general).capitalize()} {leaf.lower()} from {brand}, part of our "
        f"{subcategory.lower()} range in {department.lower()}. "
        f"Features: {_listing(features)}.{price_phrase}"
    )


def model_codes(n: int, rng: np.random.Generator) -> list[str]:
    letters = rng.choice(list("ABCDEFGHJKLMNPRSTVXZ"), size=(n, 2))
    numbers = rng.integers(10, 1000, size=n)
    return [f"{a}{b}{num}" for (a, b), num in zip(letters, numbers, strict=True)]
