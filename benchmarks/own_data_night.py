"""The own-data benchmark's view of a night: the task table ``recsys airflow nightly`` prints, the task
states in the Airflow DB when the run was killed, the problems in its log, the gate's decision."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

# ---- the night's report ------------------------------------------------------------------------

TASK_ROW = re.compile(r"^\| (?P<task>[\w.\-]+) \| (?P<state>[\w-]+) \| (?P<seconds>[\d.]+) \| (?P<tries>\d+) \|$")
TOTAL_ROW = re.compile(r"^\| \*\*(?P<dag>\w+) \((?P<date>[\d-]+)\)\*\* \| \*\*(?P<state>[\w-]+)\*\* \| "
                       r"\*\*(?P<seconds>[\d.]+)\*\* \| \|$")
PROBLEM = re.compile(r"promotion (gate|refused)|DataError|ReleaseCheckFailed|Exception:|Error:|Error code|refus",
                     re.IGNORECASE)
NOISE = re.compile(r"cuInit|cuda_platform|Unable to register cu")  # TensorFlow looking for a GPU on a CPU machine


def night_tasks(log_text: str) -> dict[str, Any]:
    """The per-task table ``recsys airflow nightly`` prints (:meth:`orchestration.runner.RunReport.table`)."""
    tasks = [{"task": m["task"], "state": m["state"], "seconds": float(m["seconds"]), "tries": int(m["tries"])}
             for m in map(TASK_ROW.match, log_text.splitlines()) if m]
    total = next((m for m in map(TOTAL_ROW.match, log_text.splitlines()) if m), None)
    return {"tasks": tasks, "state": total["state"] if total else None,
            "dag_seconds": float(total["seconds"]) if total else None, "logical_date": total["date"] if total else None}


def night_tasks_from_db(airflow_db: Path, dag_id: str = "nightly_retrain") -> list[dict[str, Any]]:
    """Every task instance of the DAG's newest run from the Airflow DB: what the table would have said, for a
    night killed before it printed it (states of tasks never started are null)."""
    if not airflow_db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as db:
            run = db.execute("SELECT run_id FROM task_instance WHERE dag_id = ? ORDER BY start_date DESC LIMIT 1",
                             (dag_id,)).fetchone()
            rows = db.execute("SELECT task_id, state, duration, try_number, start_date FROM task_instance "
                              "WHERE dag_id = ? AND run_id = ? ORDER BY start_date IS NULL, start_date, task_id",
                              (dag_id, run[0])).fetchall() if run else []
    except sqlite3.Error:
        return []
    return [{"task": task, "state": state or "none", "seconds": round(float(duration or 0.0), 1), "tries": int(tries or 0)}
            for task, state, duration, tries, _ in rows]


def night_problems(log_text: str, limit: int = 40) -> list[str]:
    """The night log's lines about refusals and errors (the gate's decision included), deduplicated."""
    lines = [line.strip()[:400] for line in log_text.splitlines() if PROBLEM.search(line) and not NOISE.search(line)]
    return list(dict.fromkeys(lines))[-limit:]


def gate_decision(airflow_db: Path, domain: str) -> Any:
    """The promotion gate task's return value (its XCom) from the night's Airflow DB; None if absent."""
    if not airflow_db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM xcom WHERE task_id = ? AND key = 'return_value' ORDER BY timestamp DESC "
                             "LIMIT 1", (f"{domain}.promotion_gate",)).fetchone()
    except sqlite3.Error as err:
        return {"unreadable": str(err)}
    if row is None:
        return None
    value = row[0]
    try:
        return _plain(json.loads(value.decode() if isinstance(value, bytes) else value))
    except (ValueError, AttributeError):
        return str(value)


def _plain(value: Any) -> Any:
    """Airflow's serialized XCom without its wrappers (``{"__classname__": "builtins.tuple", "__data__": [...]}``)."""
    if isinstance(value, dict):
        if "__classname__" in value and "__data__" in value:
            return _plain(value["__data__"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
