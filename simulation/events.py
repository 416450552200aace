"""Assembling generated events into contract-shaped frames (columns of ``EVENT_ARROW_SCHEMA``).

Event ids are deterministic and unique: the id "stem" of the slate slot (``<request_id>-<pos>``)
or of the organic view (``<session_id>-o<n>``) plus a code for the event type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from simulation.truth import GroundTruth

TYPE_CODES = {
    "impression": "imp", "click": "clk", "view": "viw", "add_to_cart": "atc", "purchase": "pur",
    "decline": "dec", "application_start": "aps", "application_approved": "apr",
}
COLUMNS = ("event_id", "domain", "user_id", "item_id", "event_type", "timestamp", "request_id", "position",
           "session_id", "device", "value", "quantity", "arm")


@dataclass
class Rows:
    """Who did what where, one entry per (future) event; slate fields are None for organic events."""

    users: np.ndarray
    items: np.ndarray
    ts_us: np.ndarray
    stem: np.ndarray
    session_id: np.ndarray
    device: np.ndarray
    request_id: np.ndarray | None = None
    position: np.ndarray | None = None
    arm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(**{k: None if v is None else v[mask] for k, v in self.__dict__.items()})

    def at(self, ts_us: np.ndarray) -> Rows:
        return replace(self, ts_us=ts_us)


class EventBuffer:
    """Collects events of one batch and returns them as one time-ordered DataFrame."""

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.parts: list[dict[str, np.ndarray | None]] = []

    def add(self, event_type: str, rows: Rows, value: np.ndarray | None = None,
            quantity: np.ndarray | None = None) -> None:
        if len(rows) == 0:
            return
        self.parts.append({
            "event_id": np.char.add(rows.stem, "-" + TYPE_CODES[event_type]),
            "user": rows.users, "item": rows.items, "ts_us": rows.ts_us,
            "event_type": np.full(len(rows), event_type), "request_id": rows.request_id,
            "position": rows.position, "session_id": rows.session_id, "device": rows.device,
            "value": value, "quantity": quantity, "arm": rows.arm,
        })

    def _column(self, name: str, fill: object, dtype: object) -> np.ndarray:
        return np.concatenate([
            np.full(len(p["user"]), fill, dtype=dtype) if p[name] is None else np.asarray(p[name]).astype(dtype)
            for p in self.parts
        ])

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        ts = self._column("ts_us", 0, np.int64)
        event_id = self._column("event_id", None, object)
        order = np.lexsort((event_id.astype(str), ts))
        quantity = self._column("quantity", -1, np.int64)[order]
        position = self._column("position", -1, np.int64)[order]
        frame = pd.DataFrame({
            "event_id": event_id[order],
            "domain": self.truth.domain,
            "user_id": self.truth.user_ids[self._column("user", 0, np.int64)[order]].astype(object),
            "item_id": self.truth.item_ids[self._column("item", 0, np.int64)[order]].astype(object),
            "event_type": self._column("event_type", None, object)[order],
            "timestamp": pd.Series(ts[order].astype("datetime64[us]")).dt.tz_localize("UTC"),
            "request_id": self._column("request_id", None, object)[order],
            "position": pd.array(np.where(position < 0, None, position), dtype="Int32"),
            "session_id": self._column("session_id", None, object)[order],
            "device": self._column("device", None, object)[order],
            "value": self._column("value", np.nan, np.float64)[order],
            "quantity": pd.array(np.where(quantity < 0, None, quantity), dtype="Int32"),
            "arm": self._column("arm", None, object)[order],
        })
        return frame
