"""Segments of the legacy segment-based recommender (the system the platform replaces).

The rule is chosen from what the users table carries (the first that covers most users):

- ``country_age`` (retail): ``country x age_band`` from the profile.
- ``age_income`` (banking): age band (<30, 30-39, 40-49, 50-64, 65+) x income quartile
  (quartiles of the users table) -- 5 x 4 = 20 segments.
- ``dominant_category`` (MovieLens, which has no demographics): the category, at the shallowest
  taxonomy level where the catalog has more than one value (MovieLens: ``Movies>Drama``... i.e. the
  movie's broadest genre), carrying most of the user's training interaction weight; ties go to the
  alphabetically first. About 20 segments; a user with no training history has no segment.

Users without a segment are served the global popularity list.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Rule = Literal["country_age", "age_income", "dominant_category"]
AGE_BINS = (0, 30, 40, 50, 65, np.inf)
AGE_LABELS = ("<30", "30-39", "40-49", "50-64", "65+")
INCOME_BANDS = 4


def _covered(users: pd.DataFrame, columns: tuple[str, ...]) -> bool:
    present = [c for c in columns if c in users.columns]
    return len(present) == len(columns) and len(users) > 0 and users[list(columns)].notna().all(axis=1).mean() > 0.5


def segment_rule(users: pd.DataFrame) -> Rule:
    if _covered(users, ("country", "age_band")):
        return "country_age"
    if _covered(users, ("age", "income")):
        return "age_income"
    return "dominant_category"


def segment_level(categories: pd.Series) -> pd.Series:
    """Each category path cut at the shallowest ``>`` level where the values are not all equal."""
    parts = categories.fillna("").astype(str).str.split(">")
    depth = int(parts.str.len().max()) if len(parts) else 0
    for level in range(1, depth + 1):
        prefixes = parts.str[:level].str.join(">")
        if prefixes.nunique() > 1:
            return prefixes
    return parts.str.join(">")


def _dominant_category(train: pd.DataFrame, catalog: pd.DataFrame) -> pd.Series:
    level = pd.Series(segment_level(catalog["category"]).to_numpy(), index=catalog["item_id"].astype(str))
    weights = train.assign(segment=level.reindex(train["item_id"].astype(str)).to_numpy())
    totals = weights.groupby(["user_id", "segment"], sort=True)["weight"].sum().reset_index()
    best = totals.sort_values(["user_id", "weight", "segment"], ascending=[True, False, True], kind="stable")
    return best.drop_duplicates("user_id").set_index("user_id")["segment"]


def assign_segments(users: pd.DataFrame, train: pd.DataFrame, catalog: pd.DataFrame) -> pd.Series:
    """``user_id -> segment label`` for every user the rule can place (see the module docstring)."""
    rule = segment_rule(users)
    if rule == "dominant_category":
        return _dominant_category(train, catalog).rename("segment")
    profiles = users.dropna(subset=["country", "age_band"] if rule == "country_age" else ["age", "income"])
    if rule == "country_age":
        labels = profiles["country"].astype(str) + " | " + profiles["age_band"].astype(str)
    else:
        age = pd.cut(profiles["age"].astype(float), AGE_BINS, labels=AGE_LABELS, right=False).astype(str)
        share = profiles["income"].astype(float).rank(method="first", pct=True)
        income = "income Q" + np.ceil(share * INCOME_BANDS).astype(int).astype(str)
        labels = age + " | " + income
    return pd.Series(labels.to_numpy(), index=profiles["user_id"].astype(str).to_numpy(), name="segment")
