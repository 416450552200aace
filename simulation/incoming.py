"""Today's live events: JSONL files under ``incoming/<domain>/`` that the streaming job consumes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.paths import DataPaths
from common.schemas import event_to_json, validate_event


def incoming_file(paths: DataPaths, domain: str, day: str) -> Path:
    return paths.incoming(domain) / f"events-{day}.jsonl"


def write_incoming(events: pd.DataFrame, paths: DataPaths, domain: str, day: str) -> int:
    """Write every event as one ``event_to_json`` line after the full contract validation (a
    simulator bug must not produce events the platform would dead-letter); returns the number written."""
    lines = []
    for record in events.to_dict("records"):
        event, rejection = validate_event(record)
        if rejection is not None:
            raise ValueError(f"simulated event {record.get('event_id')} breaks the contract: {rejection}")
        lines.append(event_to_json(event))
    path = incoming_file(paths, domain, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    tmp.replace(path)
    return len(lines)
