"""Small hand-built catalogs and users for the serving tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from serving.catalog import CatalogIndex

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _catalog_row(item_id: str, category: str, **extra: object) -> dict[str, object]:
    """One catalog row with harmless defaults (in stock, launched a year ago, low margin)."""
    row: dict[str, object] = {
        "item_id": item_id,
        "domain": "banking" if item_id.startswith("b_") else "retail",
        "title": item_id,
        "description": "",
        "category": category,
        "price": 10.0,
        "margin": 0.1,
        "inventory": 5,
        "launched_at": NOW - timedelta(days=365),
    }
    row.update(extra)
    return row


@pytest.fixture(scope="session")
def now() -> datetime:
    """The request time of the serving tests."""
    return NOW


@pytest.fixture(scope="session")
def catalog_row() -> Callable[..., dict[str, object]]:
    """Factory of catalog rows (a fixture, so test modules need not import this conftest)."""
    return _catalog_row


@pytest.fixture
def banking_catalog() -> CatalogIndex:
    rows = [
        _catalog_row("b_card_basic", "Cards>Credit>Basic", min_age=18, min_income=10_000.0),
        _catalog_row("b_card_gold", "Cards>Credit>Gold", min_age=21, min_income=60_000.0, min_credit_score=700),
        _catalog_row("b_loan", "Loans>Personal", max_dti=0.4, requires_no_arrears=True, max_age=70),
        _catalog_row("b_savings", "Savings>Instant"),
        _catalog_row("b_student", "Cards>Credit>Student", max_age=25, excludes=["b_card_basic"]),
    ]
    return CatalogIndex.from_frame(pd.DataFrame(rows), "banking")
