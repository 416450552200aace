"""Today's live events: JSONL files under ``incoming/<domain>/`` that the streaming job consumes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.paths import DataPaths
from common.schemas import Event, event_to_json


def incoming_file(paths: DataPaths, domain: str, day: str) -> Path:
    return paths.incoming(domain) / f"events-{day}.jsonl"


def write_incoming(events: pd.DataFrame, paths: DataPaths, domain: str, day: str) -> int:
    """Write every event as one ``event_to_json`` line (through the pydantic ``Event`` model, so
    types are checked); returns the number written. The tests run the full ``validate_event``."""
    records = events.astype(object).where(events.notna(), None).to_dict("records")
    lines = []
    for record in records:
        record["timestamp"] = record["timestamp"].to_pydatetime()  # a pandas Timestamp does not serialise
        lines.append(event_to_json(Event.model_validate({k: v for k, v in record.items() if v is not None})))
    path = incoming_file(paths, domain, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    tmp.replace(path)
    return len(lines)
