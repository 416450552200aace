"""Fixtures of the streaming-job tests: hand-made events, a tiny retail catalog, a Feast SQLite store.

Test modules get their helpers through fixtures (with ``--import-mode=importlib`` they cannot import
modules beside them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from common.lake import write_catalog
from common.paths import DataPaths

T0 = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)  # event time of the hand-made events (an hour start)
CATEGORIES = {"r_i1": "Shoes>Running>Trail", "r_i2": "Shoes>Running>Road", "r_i3": "Bags>City", "r_i4": "Shoes>Running>Trail"}
INVENTORY = {"r_i1": 5, "r_i2": 2, "r_i3": 0, "r_i4": 40}


@dataclass(frozen=True)
class Events:
    """Builds valid event records (dicts, as a producer writes them) and JSONL lines."""

    t0: datetime = T0

    def record(self, n: int, kind: str = "view", user: str = "r_u1", item: str = "r_i1", seconds: float = 0.0,
               **extra: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_id": f"e{n}", "domain": "retail", "user_id": user, "item_id": item, "event_type": kind,
            "timestamp": (self.t0 + timedelta(seconds=seconds)).isoformat(), "session_id": f"s-{user}",
        }
        if kind == "impression":
            record.update(request_id=f"q{n}", position=1)
        record.update(extra)
        return {k: v for k, v in record.items() if v is not None}

    @staticmethod
    def line(record: dict[str, Any]) -> bytes:
        return orjson.dumps(record)


@pytest.fixture
def events() -> Events:
    return Events()


def write_tiny_catalog(paths: DataPaths) -> None:
    rows = [
        {"item_id": i, "domain": "retail", "title": i, "description": "", "category": c, "price": 10.0,
         "margin": 0.2, "inventory": INVENTORY[i], "launched_at": T0 - timedelta(days=30)}
        for i, c in CATEGORIES.items()
    ]
    write_catalog(pd.DataFrame(rows), paths, "retail")


@pytest.fixture
def catalog_paths(data_paths: DataPaths) -> DataPaths:
    """An empty data root with the tiny retail catalog."""
    write_tiny_catalog(data_paths)
    return data_paths


@pytest.fixture(scope="module")
def feast_paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    """A data root with the tiny catalog and a registered Feast SQLite store (no offline rows)."""
    from feature_repo.store import apply, get_store

    paths = DataPaths(tmp_path_factory.mktemp("stream") / "data")
    write_tiny_catalog(paths)
    apply(get_store(paths), paths)
    return paths


@pytest.fixture
def fnapi() -> Callable[[], Any]:
    """The direct runner's batch engine, named explicitly (the generic DirectRunner tries Prism first)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return FnApiRunner


@pytest.fixture
def streaming_pipeline() -> Callable[[], Any]:
    """A streaming TestPipeline on the direct runner that executes TestStream, timers and triggers."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
    from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

    def make() -> BeamTestPipeline:
        options = PipelineOptions(flags=[])
        options.view_as(StandardOptions).streaming = True
        return BeamTestPipeline(runner=BundleBasedDirectRunner(), options=options)

    return make


@pytest.fixture
def write_lines() -> Callable[[Path, list[bytes]], None]:
    def write(path: Path, lines: list[bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as fh:
            fh.write(b"".join(line + b"\n" for line in lines))

    return write
