"""Size profiles of the synthetic world: ``tiny`` (tests), ``demo`` (the main job), ``bench`` (benchmarks).

A profile fixes the population sizes, the simulated period (with a fixed default start date so a
seed alone determines the output) and the activity rates that set the number of events.
"""

from __future__ import annotations

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


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
