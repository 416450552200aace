"""Epoch seconds must not depend on the resolution pandas holds a timestamp column in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from common.epoch import epoch_seconds

SECONDS = 1_717_200_000.5  # 2024-06-01T00:00:00.5Z


def _column(unit: str) -> pd.Series:
    ticks = {"us": 10**6, "ns": 10**9}[unit]
    array = pa.array([int(SECONDS * ticks), None], pa.timestamp(unit, tz="UTC"))
    return pa.table({"t": array}).to_pandas()["t"]


def test_microsecond_and_nanosecond_columns_give_the_same_seconds() -> None:
    us, ns = _column("us"), _column("ns")
    assert str(us.dtype) == "datetime64[us, UTC]"  # what parquet from Spark/pyarrow reads back as
    for column in (us, ns):
        seconds = epoch_seconds(column)
        assert seconds[0] == SECONDS and np.isnan(seconds[1])
    assert epoch_seconds(["2024-06-01T00:00:00.5Z"])[0] == SECONDS


def test_serving_catalog_launch_times_from_a_microsecond_column() -> None:
    from serving.catalog import CatalogIndex

    frame = pd.DataFrame({"item_id": ["a"], "category": ["A>B"], "price": [1.0], "margin": [0.1], "inventory": [1],
                          "launched_at": _column("us")[:1]})
    assert CatalogIndex.from_frame(frame, "retail").launched_ts[0] == SECONDS
