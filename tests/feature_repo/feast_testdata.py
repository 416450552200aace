"""Test data for the feature-store tests: offline sources shaped like Spark's output, two daily snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from common.features import BATCH_VIEWS, USER_HISTORY, USER_ID
from common.paths import DataPaths
from feature_repo.sample_data import synthetic_rows, write_source

DAY1 = datetime(2025, 3, 3, 6, tzinfo=UTC)  # older snapshot
DAY2 = DAY1 + timedelta(days=1)  # latest snapshot
USERS = ["r_u1", "r_u2", "b_u3"]  # b_u3 has no row in the latest snapshot
ITEMS = ["r_i1", "r_i2", "b_i3"]  # b_i3 likewise
NAIVE_VIEW = USER_HISTORY  # written with zone-less timestamps, as Spark's default INT96 reads back


@dataclass(frozen=True)
class Offline:
    paths: DataPaths
    old: dict[str, dict[str, dict]]  # view -> entity id -> row of the older snapshot
    new: dict[str, dict[str, dict]]  # view -> entity id -> row of the latest snapshot

    def latest(self, view: str, entity_id: str) -> dict:
        """What the online store must serve after materializing both snapshots."""
        return self.new[view].get(entity_id) or self.old[view][entity_id]


def _rows(table: pa.Table, key: str) -> dict[str, dict]:
    return {row[key]: row for row in table.to_pylist()}


def _naive(table: pa.Table) -> pa.Table:
    """The same table with time-zone-less timestamps (values stay UTC wall-clock)."""
    schema = pa.schema(
        [f.with_type(pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    )
    return pa.Table.from_arrays(table.columns, schema=schema)


def build_offline(paths: DataPaths) -> Offline:
    """Two part files per view (older snapshot for all ids, latest for all but the last id)."""
    rng = np.random.default_rng(7)
    old: dict[str, dict[str, dict]] = {}
    new: dict[str, dict[str, dict]] = {}
    for spec in BATCH_VIEWS:
        ids = USERS if spec.entity == USER_ID else ITEMS
        older, latest = synthetic_rows(spec, ids, DAY1, rng), synthetic_rows(spec, ids[:-1], DAY2, rng)
        for table in (older, latest):
            write_source(paths, spec, _naive(table) if spec is NAIVE_VIEW else table)
        old[spec.name], new[spec.name] = _rows(older, spec.entity), _rows(latest, spec.entity)
    return Offline(paths, old, new)


def assert_row_equal(served: dict, expected: dict, names: list[str]) -> None:
    """Float32 features are compared at float32 precision, everything else exactly."""
    for name in names:
        want, got = expected[name], served[name]
        if isinstance(want, float):
            assert np.float32(got) == np.float32(want), name
        elif isinstance(want, list) and want and isinstance(want[0], float):
            assert np.array_equal(np.float32(got), np.float32(want)), name
        else:
            assert got == want, name
