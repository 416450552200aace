"""Size profiles of the synthetic world: ``tiny`` (tests), ``demo`` (the main job), ``bench`` (benchmarks),
and the scale profiles ``s<N>k`` / ``s<N>m`` (``s100k``, ``s300k``, ``s1m``, or any such name): N thousand /
million users, half in each domain, with the demo's activity rates (~45 events per user over 30 days)
and a retail catalog of one item per ten users (:func:`scale_profile`; ``benchmarks.scale`` runs them).

A profile fixes the population sizes, the simulated period (with a fixed default start date so a
seed alone determines the output) and the activity rates that set the number of events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class DomainSize:
    """Sizes and activity of one domain.

    ``users``/``items`` exist at the start of the period; ``new_users_per_day``/``new_items_per_day``
    sign up / launch during each simulated day. ``sessions_per_user_day`` is the mean daily session
    rate of an active user (individual rates are heavy-tailed around it).
    """

    users: int
    items: int
    new_users_per_day: int
    new_items_per_day: int
    sessions_per_user_day: float
    slate_size: int


@dataclass(frozen=True)
class Profile:
    name: str
    days: int
    start_date: date
    retail: DomainSize
    banking: DomainSize

    def size(self, domain: str) -> DomainSize:
        if domain not in ("retail", "banking"):
            raise ValueError(f"the synthetic world has no domain {domain!r} (retail, banking)")
        return self.retail if domain == "retail" else self.banking


def scale_profile(users: int, name: str | None = None) -> Profile:
    """``users`` users (half retail, half banking) at the demo profile's rates; retail items = users / 10."""
    if users < 200:
        raise ValueError(f"a scale profile needs at least 200 users, not {users}")
    retail_users, banking_users = users // 2, users - users // 2
    items = max(100, users // 10)
    return Profile(
        name=name or f"s{users}",
        days=30,
        start_date=date(2024, 5, 6),
        retail=DomainSize(users=retail_users, items=items, new_users_per_day=max(1, retail_users * 6 // 1000),
                          new_items_per_day=max(1, items // 200), sessions_per_user_day=0.1, slate_size=10),
        banking=DomainSize(users=banking_users, items=40, new_users_per_day=max(1, banking_users * 3 // 1000),
                           new_items_per_day=0, sessions_per_user_day=0.05, slate_size=8),
    )


SCALE_NAME = re.compile(r"^s(?P<number>\d+)(?P<unit>[km])$")


def _scaled(name: str) -> Profile | None:
    match = SCALE_NAME.match(name)
    if match is None:
        return None
    return scale_profile(int(match["number"]) * (1000 if match["unit"] == "k" else 1_000_000), name)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        days=10,
        start_date=date(2024, 3, 4),
        retail=DomainSize(users=300, items=200, new_users_per_day=6, new_items_per_day=4,
                          sessions_per_user_day=0.3, slate_size=10),
        banking=DomainSize(users=300, items=40, new_users_per_day=4, new_items_per_day=0,
                           sessions_per_user_day=0.25, slate_size=8),
    ),
    "demo": Profile(
        name="demo",
        days=30,
        start_date=date(2024, 5, 6),
        retail=DomainSize(users=20_000, items=5_000, new_users_per_day=120, new_items_per_day=25,
                          sessions_per_user_day=0.1, slate_size=10),
        banking=DomainSize(users=20_000, items=40, new_users_per_day=60, new_items_per_day=0,
                           sessions_per_user_day=0.05, slate_size=8),
    ),
    "bench": Profile(
        name="bench",
        days=60,
        start_date=date(2024, 1, 1),
        retail=DomainSize(users=120_000, items=20_000, new_users_per_day=500, new_items_per_day=80,
                          sessions_per_user_day=0.1, slate_size=10),
        banking=DomainSize(users=120_000, items=40, new_users_per_day=250, new_items_per_day=0,
                           sessions_per_user_day=0.05, slate_size=8),
    ),
}


PROFILES |= {name: scale_profile(users, name) for name, users in (("s100k", 100_000), ("s300k", 300_000),
                                                                   ("s1m", 1_000_000))}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        scaled = _scaled(name)
        if scaled is None:
            raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} or s<N>k / s<N>m "
                             "(N thousand / million users)") from None
        return scaled
