"""Per-user real-time state behind the ``user_activity`` view (pure Python, no Beam).

Semantics are the batch job's (``spark_jobs.user_features``): an *interaction* is any of the user's
own events (not an impression); ``recent_item_ids`` are the last ``RECENT_LENGTH`` distinct items
interacted with, newest first; ``recent_category_keys``/``recent_category_counts`` are the catalog
categories of those items, most recent first, and how many of them fall in each; ``session_depth``
counts the interactions of the user's latest session; ``last_purchase_ts`` is the last conversion
(retail purchase, banking approval).

Applying events is order-insensitive (maxima, counts and a newest-first list trimmed by time), so
out-of-order events and bundles in any order give the same state. ``seed`` merges a row the batch
job already put online with the same max-semantics, so a replayed seed changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.domains import domain as domain_config
from common.features import EVENT_TIMESTAMP, RECENT_LENGTH, USER_ACTIVITY, USER_ID
from common.schemas import Event

MAX_SESSIONS = 4  # sessions remembered per user (the latest one defines session_depth)
SEEDED_SESSION = ""  # the session of a seeded session_depth, whose id the online row does not carry


@dataclass
class UserActivityState:
    domain: str
    items: dict[str, tuple[float, str | None]] = field(default_factory=dict)  # item -> (last ts, category)
    sessions: dict[str, tuple[int, float]] = field(default_factory=dict)  # session -> (interactions, last ts)
    last_event_ts: float = 0.0
    last_purchase_ts: float = 0.0

    def apply(self, event: Event, category: str | None) -> bool:
        """Fold one event in; returns False (state unchanged) for impressions."""
        if event.event_type == "impression":
            return False
        ts = event.timestamp.timestamp()
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
        values = {
            "session_depth": self.session_depth,
            "last_event_ts": int(self.last_event_ts),
            "last_purchase_ts": int(self.last_purchase_ts),
            "recent_item_ids": [item for item, _ in self._newest_items()],
            "recent_category_keys": keys,
            "recent_category_counts": counts,
        }
        return {USER_ID: user_id, EVENT_TIMESTAMP: int(self.last_event_ts), **{n: values[n] for n in USER_ACTIVITY.names}}

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "domain": self.domain,
                "items": self.items,
                "sessions": self.sessions,
                "last_event_ts": self.last_event_ts,
                "last_purchase_ts": self.last_purchase_ts,
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
        )
