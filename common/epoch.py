"""Timestamps as epoch seconds, whatever the resolution pandas holds them in.

Parquet written by Spark and pyarrow reads back as ``datetime64[us]``; Python datetimes build
``datetime64[ns]``. ``Series.astype("int64")`` returns ticks of the column's own unit, so
``astype("int64") // 10**9`` is only right for nanoseconds -- on a microsecond column it is off by 1000x
(a launch in 2024 looks like one in January 1970). Subtracting the epoch is unit-independent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_EPOCH = pd.Timestamp(0, tz="UTC")


def epoch_seconds(values: Any) -> np.ndarray:
    """Float64 epoch seconds of anything ``pd.to_datetime(..., utc=True)`` reads; NaN where missing."""
    stamps = pd.Series(pd.to_datetime(values, utc=True))
    return (stamps - _EPOCH).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
