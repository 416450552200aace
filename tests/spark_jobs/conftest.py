"""Fixtures of the Spark job tests: a tiny hand-built world (catalog, users, events) written to a lake.

The feature and training-set tests compute their expected values by hand from it; the ``pipeline``
fixture runs it through compaction, features and training sets once per test run. Logical date
2025-03-10, snapshot days 03-09 and 03-10. Positive weights (config/domains.yaml): retail view 1,
click 1, add_to_cart 2, purchase 4; banking application_start 3, application_approved 4.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from spark_jobs import compact, features, training_sets

LOGICAL_DATE = date(2025, 3, 10)
OLD = datetime(2025, 1, 1, tzinfo=UTC)


def ts(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def world_catalog() -> pd.DataFrame:
    def item(item_id: str, price: float, category: str, inventory: int, launched: datetime, domain: str = "retail"):
        return {"item_id": item_id, "domain": domain, "title": item_id, "description": "", "category": category,
                "price": price, "margin": 0.2, "inventory": inventory, "launched_at": launched}

    return pd.DataFrame(
        [
            item("r_i1", 10.0, "Shoes>Running", 5, OLD),
            item("r_i2", 20.0, "Shoes>Trail", 0, OLD),
            item("r_i3", 30.0, "Bags", 2, ts(10, 12)),  # launched during the last snapshot day
            item("r_i4", 40.0, "Bags", 1, OLD),
            item("r_i5", 50.0, "Hats", 1, OLD),
            item("b_p1", 0.0, "Cards>Credit", 100, datetime(2024, 1, 1, tzinfo=UTC), domain="banking"),
        ]
    )


def world_users() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"user_id": "r_u1", "domain": "retail", "signed_up_at": OLD, "country": "DE", "age_band": "25-34"},
            {"user_id": "r_u2", "domain": "retail", "signed_up_at": ts(10, 8), "country": "FR", "age_band": "35-44"},
            {"user_id": "b_u1", "domain": "banking", "signed_up_at": datetime(2024, 3, 10, tzinfo=UTC), "age": 40,
             "income": 50_000.0, "credit_score": 700, "dti": 0.3, "has_arrears": False, "products_held": ["b_p0"]},
        ]
    )


def world_events() -> pd.DataFrame:
    def ev(n: int, user: str, item: str, kind: str, when: datetime, session: str, **extra: object):
        domain = "banking" if user.startswith("b_") else "retail"
        return {"event_id": f"e{n}", "domain": domain, "user_id": user, "item_id": item, "event_type": kind,
                "timestamp": when, "session_id": session, **{"device": "web", **extra}}

    return pd.DataFrame(
        [
            ev(1, "r_u1", "r_i1", "view", ts(1, 10), "s1"),
            ev(2, "r_u1", "r_i1", "click", ts(1, 10, 5), "s1", request_id="q0", position=1),
            ev(3, "r_u1", "r_i1", "purchase", ts(1, 10, 10), "s1", value=100.0, quantity=1),
            ev(4, "r_u1", "r_i2", "impression", ts(9, 9), "s2", request_id="q1", position=1),
            ev(5, "r_u1", "r_i1", "impression", ts(9, 9), "s2", request_id="q1", position=2),
            ev(6, "r_u1", "r_i2", "click", ts(9, 9, 1), "s2", request_id="q1", position=1),
            ev(7, "r_u1", "r_i2", "add_to_cart", ts(9, 9, 2), "s2"),
            ev(8, "r_u1", "r_i4", "view", ts(10, 15), "s3"),
            ev(9, "r_u1", "r_i3", "view", ts(10, 15, 30), "s3"),
            ev(10, "r_u1", "r_i4", "purchase", ts(10, 15, 5), "s3", value=50.0, quantity=1),
            ev(11, "r_u1", "r_i5", "decline", ts(10, 16), "s3"),
            ev(12, "r_u1", "r_i5", "view", ts(11, 8), "s4"),  # after the logical date: never counted
            ev(13, "b_u1", "b_p1", "application_start", ts(9, 12), "s9"),
            ev(14, "b_u1", "b_p1", "application_approved", ts(10, 12), "s9"),
            # impressions only the training sets look at (labels: see test_spark_training_sets.py)
            ev(15, "r_u1", "r_i4", "impression", ts(10, 14), "s3", request_id="q2", position=1, device="ios"),
            ev(16, "r_u1", "r_i4", "impression", ts(9, 14), "s2", request_id="q4", position=3),
            ev(17, "r_u1", "r_i2", "impression", ts(10, 10), "s5", request_id="q5", position=1, device="android"),
            # account events (common/account_events.py): the account features read them, nothing else does
            ev(18, "b_u1", "b_mcc_travel", "card_spend", ts(8, 10), None, device=None, value=250.0),
            ev(19, "b_u1", "b_mcc_groceries", "card_spend", ts(9, 11), None, device=None, value=40.0),
            ev(20, "b_u1", "b_mcc_travel", "card_spend", ts(10, 9), None, device=None, value=300.0),
            ev(21, "b_u1", "b_acct_salary", "salary_credit", ts(1, 6), None, device=None, value=4000.0),
            ev(22, "b_u1", "b_acct_salary", "salary_credit", ts(9, 6), None, device=None, value=4600.0),
            ev(23, "b_u1", "b_xfer_out", "transfer", ts(9, 15), None, device=None, value=12_000.0),
        ]
    )


def write_world(paths: DataPaths) -> None:
    """The world's raw events, catalogs and users, written with the shared lake writers."""
    write_events(world_events(), paths)
    catalog, users = world_catalog(), world_users()
    for domain in ("retail", "banking"):
        write_catalog(catalog[catalog["domain"] == domain], paths, domain)
        write_users(users[users["domain"] == domain], paths, domain)


@pytest.fixture(scope="session")
def tiny_spark(spark):
    """The shared session, tuned for tiny frames: compiling whole-stage code costs more than it saves."""
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    return spark


def _run_pipeline(directory: Path) -> None:
    paths = DataPaths(directory / "data")
    write_world(paths)
    root = ["--data-dir", str(paths.root)]
    assert compact.main(["--date", "2025-03-01", "--end", "2025-03-11", *root]) == 0
    assert features.main(["--date", LOGICAL_DATE.isoformat(), "--days", "2", *root]) == 0
    assert training_sets.main(["--start", "2025-03-09", "--end", LOGICAL_DATE.isoformat(), *root]) == 0


@pytest.fixture(scope="session")
def pipeline(tiny_spark, built_once) -> DataPaths:
    """The world run through the three jobs' ``main`` (once per test run; read-only): compaction of
    03-01..03-11, features for the snapshot days 03-09 and 03-10, training sets for the window 03-09..03-10."""
    return DataPaths(built_once.get("spark-pipeline", _run_pipeline) / "data")
