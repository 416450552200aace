"""Building blocks shared by the retail and banking world builders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from simulation.truth import GroundTruth

LATENT_DIM = 16
DEVICES = ("web", "ios", "android")
DEVICE_SHARE = (0.45, 0.30, 0.25)
US_PER_DAY = 86_400 * 1_000_000


@dataclass
class World:
    """One domain's generated world: the published tables and the hidden truth behind them."""

    users: pd.DataFrame  # USER_ARROW_SCHEMA columns
    catalog: pd.DataFrame  # CATALOG_ARROW_SCHEMA columns
    truth: GroundTruth


def make_ids(domain: str, kind: str, n: int, width: int) -> np.ndarray:
    """``r_u000123``-style ids: the domain's configured prefix, a kind letter, a zero-padded number."""
    prefix = domain_config(domain).id_prefix + kind
    width = max(width, len(str(n)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(1, n + 1)])


def arrival_times(initial: int, per_day: int, days: int, start_us: int, history_days: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Epoch microseconds of sign-up / launch: ``initial`` spread over the ``history_days`` before the
    start, then ``per_day`` new arrivals during each simulated day (sorted, so ids follow time)."""
    before = start_us - rng.integers(1, history_days * US_PER_DAY, size=initial)
    during = [start_us + d * US_PER_DAY + np.sort(rng.integers(0, US_PER_DAY, size=per_day)) for d in range(days)]
    return np.concatenate([np.sort(before), *during]).astype(np.int64)


def heavy_tailed_activity(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Per-user mean sessions per day: lognormal (heavy tail) scaled to ``mean``, capped at 4/day."""
    raw = rng.lognormal(0.0, 1.0, size=n)
    return np.minimum(raw * (mean / raw.mean()), 4.0)


def device_preference(n: int, rng: np.random.Generator) -> np.ndarray:
    """Index into :data:`DEVICES` of each user's primary device."""
    return rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE).astype(np.int8)


def to_utc(epoch_us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(epoch_us, unit="us", utc=True))


def normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)
