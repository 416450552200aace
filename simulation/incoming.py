"""Today's live events: JSONL files under ``incoming/<domain>/`` that the streaming job consumes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.paths import DataPaths
from common.schemas import event_to_json, validate_event


def incoming_file(paths: DataPaths, domain: str, day: str) -> Path:
    return paths.incoming(domain) / f"events-{day}.jsonl"


def write_incoming(events: pd.DataFrame, paths: DataPaths, domain: str, day: str) -> int:
    """Validate every event and write it as one ``event_to_json`` line; returns the number written.

    A generated event that fails validation is a simulator bug, so it raises instead of dead-lettering.
    """
    records = events.astype(object).where(events.notna(), None).to_dict("records")
    lines = []
    for record in records:
        record["timestamp"] = record["timestamp"].to_pydatetime()  # a pandas Timestamp does not serialise
        event, rejection = validate_event(record)
        if rejection is not None:
            raise ValueError(f"generated an invalid event {record!r}: {rejection.detail}")
        lines.append(event_to_json(event))
    path = incoming_file(paths, domain, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    tmp.replace(path)
    return len(lines)
