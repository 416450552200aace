"""One tiny synthetic world per test session (generation takes a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow.dataset as ds
import pytest

from common.lake import read_catalog, read_events, read_users
from common.lake_schemas import EVENT_ARROW_SCHEMA
from common.paths import DataPaths
from simulation.generate import GenerationSummary, generate
from simulation.incoming import incoming_file
from simulation.truth import GroundTruth

SEED = 11


@dataclass
class TinyWorld:
    paths: DataPaths
    summary: GenerationSummary

    def lake_events(self, domain: str) -> pd.DataFrame:
        return read_events(self.paths, domain)

    def incoming_lines(self, domain: str) -> list[bytes]:
        day = self.summary.end_date.isoformat()
        return incoming_file(self.paths, domain, day).read_bytes().splitlines()

    def all_events(self, domain: str) -> pd.DataFrame:
        """Lake + today's JSONL as raw values (nullable ints stay ints, missing is None), by time."""
        lake = ds.dataset(self.paths.events / f"domain={domain}", format="parquet", partitioning="hive")
        rows = [{**row, "domain": domain} for row in lake.to_table().drop_columns(["date"]).to_pylist()]
        rows += [orjson.loads(line) for line in self.incoming_lines(domain)]
        columns = list(EVENT_ARROW_SCHEMA.names)
        frame = pd.DataFrame({c: np.array([r.get(c) for r in rows], dtype=object) for c in columns})
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        return frame.sort_values(["timestamp", "event_id"], ignore_index=True)

    def catalog(self, domain: str) -> pd.DataFrame:
        return read_catalog(self.paths, domain)

    def users(self, domain: str) -> pd.DataFrame:
        return read_users(self.paths, domain)

    def truth(self, domain: str) -> GroundTruth:
        return GroundTruth.load(self.paths, domain)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    paths = DataPaths(tmp_path_factory.mktemp("sim") / "data")
    return TinyWorld(paths, generate("tiny", SEED, paths, progress=False))
