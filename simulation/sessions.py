"""Who visits when: each day's sessions, their devices, time of day and the slate requests in them.

Every active user (signed up before the day starts) opens Poisson(activity x weekday factor)
sessions. A session uses the user's primary device most of the time and starts at an hour drawn
from that device's time-of-day curve. Each session requests 1-5 slates a minute or two apart and
makes a few organic (search / browse) views. Sessions are squeezed into the day so that every
event of a session -- including a purchase several minutes later -- falls on the same date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.domains import domain as domain_config
from simulation.truth import GroundTruth
from simulation.world import DEVICE_SHARE, DEVICES, US_PER_DAY

S = 1_000_000  # microseconds per second
SESSION_SPAN_S = 2_700  # upper bound on a session's length including its latest purchase/decision
SLATE_GAP_MEAN_S, SLATE_GAP_MAX_S = 90.0, 300.0
MAX_SLATES = 5
PRIMARY_DEVICE_SHARE = 0.75

# Relative traffic by hour of day (UTC) for web, ios, android.
HOURLY = {
    "web": (1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 10, 10, 10, 9, 8, 7, 7, 8, 8, 6, 4, 2),
    "ios": (2, 1, 1, 1, 1, 2, 4, 7, 8, 6, 5, 5, 7, 6, 5, 5, 6, 7, 8, 10, 11, 11, 9, 5),
    "android": (2, 1, 1, 1, 1, 2, 4, 7, 8, 6, 5, 5, 7, 6, 5, 5, 6, 7, 8, 10, 11, 11, 9, 5),
}


@dataclass
class SessionPlan:
    """One day of traffic: per session (``session_*``) and per slate request (``request_*``)."""

    session_user: np.ndarray
    session_device: np.ndarray  # index into DEVICES
    session_start_us: np.ndarray
    session_ids: np.ndarray
    session_organic: np.ndarray  # organic views in the session
    request_session: np.ndarray  # index into the session arrays
    request_ts_us: np.ndarray
    request_ids: np.ndarray

    @property
    def request_user(self) -> np.ndarray:
        return self.session_user[self.request_session]

    @property
    def request_device(self) -> np.ndarray:
        return self.session_device[self.request_session]


def _numbered(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), max(6, len(str(n)))))


def plan_day(truth: GroundTruth, day_start_us: int, weekend_factor: float, slates_per_session: float,
             organic_per_session: float, rng: np.random.Generator) -> SessionPlan:
    """Sessions and slate requests of the day that starts at ``day_start_us`` (epoch microseconds)."""
    weekday = int(np.datetime64(day_start_us, "us").astype("datetime64[D]").view("int64") + 3) % 7  # 0 = Monday
    factor = weekend_factor if weekday >= 5 else 1.0
    active = truth.signed_up_us < day_start_us
    counts = rng.poisson(truth.activity * active * factor)
    user = np.repeat(np.arange(len(counts)), counts)
    n = len(user)
    random_device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE)
    device = np.where(rng.random(n) < PRIMARY_DEVICE_SHARE, truth.device_preference[user], random_device).astype(np.int8)
    hourly = np.array([HOURLY[d] for d in DEVICES], dtype=np.float64)
    hourly /= hourly.sum(axis=1, keepdims=True)
    hour = (hourly[device].cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    second = (hour * 3600 + rng.uniform(0, 3600, size=n)) * (86_400 - SESSION_SPAN_S) / 86_400
    start = day_start_us + (second * S).astype(np.int64)
    order = np.argsort(start, kind="stable")
    user, device, start = user[order], device[order], start[order]

    n_slates = 1 + np.minimum(rng.poisson(slates_per_session - 1.0, size=n), MAX_SLATES - 1)
    request_session = np.repeat(np.arange(n), n_slates)
    gaps = np.minimum(rng.exponential(SLATE_GAP_MEAN_S, size=len(request_session)), SLATE_GAP_MAX_S)
    first = np.r_[0, np.cumsum(n_slates)[:-1]]
    gaps[first] = 0.0  # the first slate loads when the session starts
    elapsed = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], n_slates)
    stamp = np.datetime_as_string(np.datetime64(day_start_us, "us"), unit="D").replace("-", "")
    prefix = domain_config(truth.domain).id_prefix
    return SessionPlan(
        session_user=user,
        session_device=device,
        session_start_us=start,
        session_ids=_numbered(f"{prefix}s{stamp}-", n),
        session_organic=rng.poisson(organic_per_session, size=n),
        request_session=request_session,
        request_ts_us=start[request_session] + (elapsed * S).astype(np.int64),
        request_ids=_numbered(f"{prefix}q{stamp}-", len(request_session)),
    )


def simulated_day_start_us(start_us: int, day: int) -> int:
    return start_us + day * US_PER_DAY
