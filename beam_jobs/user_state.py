"""Per-user real-time state behind the ``user_activity`` view (pure Python, no Beam).

Semantics are the batch job's (``spark_jobs.user_features``): an *interaction* is any of the user's
own events (not an impression); ``recent_item_ids`` are the last ``RECENT_LENGTH`` distinct items
interacted with, newest first; ``recent_category_keys``/``recent_category_counts`` are the catalog
categories of those items, most recent first, and how many of them fall in each; ``session_depth``
counts the interactions of the user's latest session; ``last_purchase_ts`` is the last conversion
(retail purchase, banking approval).

Account events (:mod:`common.account_events`) never touch the above; they keep the account state of
the view, as ``spark_jobs.account_features.account_activity`` initialises it: the last salary credit,
the last salary change (a credit more than 1% off the one before it, among the remembered credits and
the seeded change), and the large transfers of the 90 days before the newest one.

Applying events is order-insensitive (maxima, counts and a newest-first list trimmed by time), so
out-of-order events and bundles in any order give the same state. ``seed`` merges a row the batch
job already put online with the same max-semantics, so a replayed seed changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.account_events import LARGE_TRANSFER, SECONDS_PER_DAY, TRANSFER_WINDOW_DAYS, is_salary_change
from common.domains import domain as domain_config
from common.features import EVENT_TIMESTAMP, RECENT_LENGTH, USER_ACTIVITY, USER_ID
from common.schemas import Event

MAX_SESSIONS = 4  # sessions remembered per user (the latest one defines session_depth)
SALARY_MEMORY = 6  # salary credits remembered per user
TRANSFER_MEMORY = 32  # large transfers remembered per user (those of the last 90 days)
SEEDED_SESSION = ""  # the session of a seeded session_depth, whose id the online row does not carry


@dataclass
class UserActivityState:
    domain: str
    items: dict[str, tuple[float, str | None]] = field(default_factory=dict)  # item -> (last ts, category)
    sessions: dict[str, tuple[int, float]] = field(default_factory=dict)  # session -> (interactions, last ts)
    last_event_ts: float = 0.0
    last_purchase_ts: float = 0.0
    salary_credits: dict[float, float] = field(default_factory=dict)  # ts -> amount, the latest SALARY_MEMORY
    seeded_salary_change_ts: float = 0.0  # the batch's last salary change (before the remembered credits)
    large_transfers: list[float] = field(default_factory=list)  # epoch seconds, newest first
    last_account_ts: float = 0.0

    def apply(self, event: Event, category: str | None) -> bool:
        """Fold one event in; returns False (state unchanged) for impressions and card payments."""
        if event.event_type == "impression":
            return False
        ts = event.timestamp.timestamp()
        if event.event_type in domain_config(event.domain).account_events:
            return self._apply_account(event.event_type, ts, float(event.value or 0.0))
        self.last_event_ts = max(self.last_event_ts, ts)
        if event.event_type == domain_config(event.domain).conversion_event:
            self.last_purchase_ts = max(self.last_purchase_ts, ts)
        seen = self.items.get(event.item_id)
        if seen is None or seen[0] < ts:
            self._remember_item(event.item_id, ts, category)
        if event.session_id is not None:
            count, last = self.sessions.get(event.session_id, (0, ts))
            self.sessions[event.session_id] = (count + 1, max(last, ts))
            newest = sorted(self.sessions.items(), key=lambda kv: (kv[1][1], kv[0]), reverse=True)
            self.sessions = dict(newest[:MAX_SESSIONS])
        return True

    def _apply_account(self, kind: str, ts: float, amount: float) -> bool:
        if kind == "salary_credit":
            if self.salary_credits.get(ts) == amount:
                return False
            self.salary_credits[ts] = amount
            self.salary_credits = dict(sorted(self.salary_credits.items())[-SALARY_MEMORY:])
        elif kind == "transfer" and amount >= LARGE_TRANSFER and ts not in self.large_transfers:
            newest = max([ts, *self.large_transfers[:1]])
            kept = [t for t in (ts, *self.large_transfers) if t > newest - TRANSFER_WINDOW_DAYS * SECONDS_PER_DAY]
            self.large_transfers = sorted(kept, reverse=True)[:TRANSFER_MEMORY]
        else:
            return False  # card payments and small transfers: nightly features only
        self.last_account_ts = max(self.last_account_ts, ts)
        return True

    @property
    def salary_change_ts(self) -> float:
        """The last remembered credit that differs from the one before it, else the seeded change."""
        credits = sorted(self.salary_credits.items())
        changes = [ts for (_, before), (ts, amount) in itertools.pairwise(credits) if is_salary_change(before, amount)]
        return max([self.seeded_salary_change_ts, *changes])

    def apply_all(self, events: Iterable[Event], categories: Mapping[str, str | None]) -> bool:
        changed = False
        for event in events:
            changed |= self.apply(event, categories.get(event.item_id))
        return changed

    def _remember_item(self, item_id: str, ts: float, category: str | None) -> None:
        self.items[item_id] = (ts, category)
        if len(self.items) > RECENT_LENGTH:
            self.items = dict(self._newest_items()[:RECENT_LENGTH])

    def _newest_items(self) -> list[tuple[str, tuple[float, str | None]]]:
        return sorted(self.items.items(), key=lambda kv: (-kv[1][0], kv[0]))

    def seed(self, row: Mapping[str, Any], categories: Mapping[str, str | None]) -> None:
        """Merge a ``user_activity`` row already online (batch-initialised): its recent items get
        descending synthetic times ending at its ``last_event_ts``, its session depth belongs to a
        session of unknown id at that time."""
        self._seed_account(row)
        last = float(row.get("last_event_ts") or 0)
        if last <= 0:
            return
        self.last_event_ts = max(self.last_event_ts, last)
        self.last_purchase_ts = max(self.last_purchase_ts, float(row.get("last_purchase_ts") or 0))
        for rank, item_id in enumerate(row.get("recent_item_ids") or []):
            ts = last - rank
            seen = self.items.get(item_id)
            if seen is None or seen[0] < ts:
                self._remember_item(item_id, ts, categories.get(item_id))
        depth = int(row.get("session_depth") or 0)
        if depth > 0 and SEEDED_SESSION not in self.sessions:
            self.sessions[SEEDED_SESSION] = (depth, last)

    def _seed_account(self, row: Mapping[str, Any]) -> None:
        credited = float(row.get("salary_credit_ts") or 0)
        if credited > 0:
            self.salary_credits.setdefault(credited, float(row.get("salary_credit") or 0.0))
            self.salary_credits = dict(sorted(self.salary_credits.items())[-SALARY_MEMORY:])
        self.seeded_salary_change_ts = max(self.seeded_salary_change_ts, float(row.get("salary_change_ts") or 0))
        for ts in row.get("large_transfer_ts") or []:
            if float(ts) not in self.large_transfers:
                self.large_transfers.append(float(ts))
        self.large_transfers = sorted(self.large_transfers, reverse=True)[:TRANSFER_MEMORY]
        self.last_account_ts = max(self.last_account_ts, credited, *self.large_transfers[:1])

    @property
    def session_depth(self) -> int:
        if not self.sessions:
            return 0
        _, (count, _) = max(self.sessions.items(), key=lambda kv: (kv[1][1], kv[0]))
        return count

    def recent_categories(self) -> tuple[list[str], list[int]]:
        newest: dict[str, tuple[float, int]] = {}
        for ts, category in self.items.values():
            if category is None:
                continue
            last, count = newest.get(category, (ts, 0))
            newest[category] = (max(last, ts), count + 1)
        ordered = sorted(newest.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [c for c, _ in ordered], [n for _, (_, n) in ordered]

    def row(self, user_id: str) -> dict[str, Any]:
        """The ``user_activity`` push row (epoch seconds truncated like Spark's ``unix_seconds``)."""
        keys, counts = self.recent_categories()
        credited, amount = max(self.salary_credits.items(), default=(0.0, 0.0))
        values = {
            "session_depth": self.session_depth,
            "last_event_ts": int(self.last_event_ts),
            "last_purchase_ts": int(self.last_purchase_ts),
            "recent_item_ids": [item for item, _ in self._newest_items()],
            "recent_category_keys": keys,
            "recent_category_counts": counts,
            "salary_credit": amount,
            "salary_credit_ts": int(credited),
            "salary_change_ts": int(self.salary_change_ts),
            "large_transfer_ts": [int(ts) for ts in self.large_transfers],
        }
        stamp = int(max(self.last_event_ts, self.last_account_ts))
        return {USER_ID: user_id, EVENT_TIMESTAMP: stamp, **{n: values[n] for n in USER_ACTIVITY.names}}

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "domain": self.domain,
                "items": self.items,
                "sessions": self.sessions,
                "last_event_ts": self.last_event_ts,
                "last_purchase_ts": self.last_purchase_ts,
                "salary_credits": list(self.salary_credits.items()),
                "seeded_salary_change_ts": self.seeded_salary_change_ts,
                "large_transfers": self.large_transfers,
                "last_account_ts": self.last_account_ts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> UserActivityState:
        raw = orjson.loads(data)
        return cls(
            domain=raw["domain"],
            items={k: (float(v[0]), v[1]) for k, v in raw["items"].items()},
            sessions={k: (int(v[0]), float(v[1])) for k, v in raw["sessions"].items()},
            last_event_ts=float(raw["last_event_ts"]),
            last_purchase_ts=float(raw["last_purchase_ts"]),
            # states committed before the account fields have none
            salary_credits={float(ts): float(amount) for ts, amount in raw.get("salary_credits", [])},
            seeded_salary_change_ts=float(raw.get("seeded_salary_change_ts", 0.0)),
            large_transfers=[float(ts) for ts in raw.get("large_transfers", [])],
            last_account_ts=float(raw.get("last_account_ts", 0.0)),
        )
