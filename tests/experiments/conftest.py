"""A tiny hand-built A/B lake (retail), analysed once per test run by the real Spark job.

Dates 2025-03-10 (day 1) and 2025-03-11 (day 2); slates of 3 items; arms logged on impressions.

=====  ======  ====  =======  ==========  ===============================================
user   arm     day   request  items       feedback
=====  ======  ====  =======  ==========  ===============================================
r_u1   control 1     q1       i1 i2 i3    click i1, purchase i1 (100, on the slate); an
                                          earlier purchase of i1 (999) BEFORE exposure
r_u2   control 1     q2       i1 i3 i4    --
r_u2   control 2     q3       i1 i2 i3    click i2; organic purchase of i5 (40)
r_u3   treat.  1     q4       i4 i5 i6    click i5 + i6, purchases i5 (60) + i6 (90)
r_u4   treat.  2     q5       i5 i6 i1    click i1
r_u5   both    1, 2  q6, q7   i1 i2 i3    -- (seen in two arms: excluded, counted)
r_u6   (none)  1     q8       i1 i2 i3    -- (impressions without an arm: counted)
=====  ======  ====  =======  ==========  ===============================================

Categories: i1 Shoes>Running, i2 Shoes>Trail, i3 Bags, i4 Bags, i5 Hats>Summer, i6 Hats>Winter.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from common.lake import write_catalog, write_events
from common.paths import DataPaths
from experiments.analysis import ABReport

DAY1, DAY2 = date(2025, 3, 10), date(2025, 3, 11)
CATEGORIES = {"r_i1": "Shoes>Running", "r_i2": "Shoes>Trail", "r_i3": "Bags", "r_i4": "Bags",
              "r_i5": "Hats>Summer", "r_i6": "Hats>Winter"}
SLATES = [  # request, user, arm, day, hour, items
    ("q1", "r_u1", "control", 10, 9, ["r_i1", "r_i2", "r_i3"]),
    ("q2", "r_u2", "control", 10, 11, ["r_i1", "r_i3", "r_i4"]),
    ("q3", "r_u2", "control", 11, 9, ["r_i1", "r_i2", "r_i3"]),
    ("q4", "r_u3", "treatment", 10, 12, ["r_i4", "r_i5", "r_i6"]),
    ("q5", "r_u4", "treatment", 11, 10, ["r_i5", "r_i6", "r_i1"]),
    ("q6", "r_u5", "control", 10, 13, ["r_i1", "r_i2", "r_i3"]),
    ("q7", "r_u5", "treatment", 11, 13, ["r_i1", "r_i2", "r_i3"]),
    ("q8", "r_u6", None, 10, 14, ["r_i1", "r_i2", "r_i3"]),
]


def ts(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def ab_events() -> pd.DataFrame:
    rows: list[dict[str, object]] = []

    def ev(user: str, item: str, kind: str, when: datetime, request: str | None = None, **extra: object) -> None:
        rows.append({"event_id": f"e{len(rows)}", "domain": "retail", "user_id": user, "item_id": item,
                     "event_type": kind, "timestamp": when, "request_id": request, "session_id": "s", **extra})

    for request, user, arm, day, hour, items in SLATES:
        for position, item in enumerate(items, start=1):
            ev(user, item, "impression", ts(day, hour), request, position=position, arm=arm,
               propensity=1.0 if position < 3 else 0.5)
    ev("r_u1", "r_i1", "purchase", ts(10, 8), value=999.0, quantity=1)  # before r_u1's first exposure
    ev("r_u1", "r_i1", "click", ts(10, 9, 1), "q1", position=1, arm="control")
    ev("r_u1", "r_i1", "purchase", ts(10, 9, 5), "q1", position=1, value=100.0, quantity=1)
    ev("r_u2", "r_i2", "click", ts(11, 9, 1), "q3", position=2)
    ev("r_u2", "r_i5", "purchase", ts(11, 9, 30), value=40.0, quantity=1)  # organic, after exposure
    ev("r_u3", "r_i5", "click", ts(10, 12, 1), "q4", position=2)
    ev("r_u3", "r_i6", "click", ts(10, 12, 2), "q4", position=3)
    ev("r_u3", "r_i5", "purchase", ts(10, 12, 5), "q4", position=2, value=60.0, quantity=1)
    ev("r_u3", "r_i6", "purchase", ts(10, 12, 6), "q4", position=3, value=90.0, quantity=1)
    ev("r_u4", "r_i1", "click", ts(11, 10, 1), "q5", position=3)
    return pd.DataFrame(rows)


def ab_catalog() -> pd.DataFrame:
    return pd.DataFrame([
        {"item_id": i, "domain": "retail", "title": i, "description": "", "category": c, "price": 10.0,
         "margin": 0.2, "inventory": 5, "launched_at": datetime(2024, 1, 1, tzinfo=UTC)}
        for i, c in CATEGORIES.items()
    ])


@pytest.fixture
def lake_events() -> pd.DataFrame:
    """The events of the table above (a fresh frame per test)."""
    return ab_events()


@dataclass(frozen=True)
class AnalysedLake:
    paths: DataPaths
    reports: list[ABReport]
    stdout: str


def _analyse(spark, directory: Path) -> None:  # noqa: ANN001
    from experiments.ab_metrics import ABOptions, run  # imports pyspark

    paths = DataPaths(directory / "data")
    write_events(ab_events(), paths)
    write_catalog(ab_catalog(), paths, "retail")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        reports = run(spark, paths, ["retail"], DAY1, DAY2, ABOptions(source="raw"))
    (directory / "run.pickle").write_bytes(pickle.dumps((reports, out.getvalue())))


@pytest.fixture(scope="session")
def analysed_lake(spark, built_once) -> AnalysedLake:  # noqa: ANN001
    """The hand-built lake after one run of the A/B metrics job (outputs under its data root; once per test
    run, read-only)."""
    directory = built_once.get("ab-lake", partial(_analyse, spark))
    reports, stdout = pickle.loads((directory / "run.pickle").read_bytes())
    return AnalysedLake(DataPaths(directory / "data"), reports, stdout)
