"""Request-context and cross features of ranking examples, computed by the very functions serving calls
(:func:`common.request_context.request_context`, :func:`common.cross_features.cross_features`) inside
``mapInPandas``.

Examples that share a user and a ``user_history`` row (a slate, as at serving time) are matched against
that history in one vectorised call. The history arrays are consumed here and not passed on.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from common.cross_features import CROSS_FEATURES, cross_features
from common.features import REQUEST_CONTEXT, USER_HISTORY, USER_ID
from common.request_context import request_context
from spark_jobs.lake_io import spark_type

HISTORY_TIME = "_history_ts"  # event_timestamp of the user_history row each example was joined to
_NOW, _GROUP = "_now_s", "_history_group"
_ADDED = (*REQUEST_CONTEXT.fields, *CROSS_FEATURES)


def _output_schema(examples: DataFrame) -> StructType:
    dropped = {*USER_HISTORY.names, HISTORY_TIME}
    kept = [f for f in examples.schema.fields if f.name not in dropped]
    return StructType([*kept, *(StructField(f.name, spark_type(f.dtype)) for f in _ADDED)])


def _compute(batches: Iterator[pd.DataFrame], category_column: str) -> Iterator[pd.DataFrame]:
    for frame in batches:
        now = frame[_NOW].to_numpy(dtype=np.float64)
        context = request_context(now, frame["device"].tolist())
        crosses = {f.name: np.zeros(len(frame), dtype=np.float32) for f in CROSS_FEATURES}
        item_ids, categories = frame["item_id"].to_numpy(), frame[category_column].to_numpy()
        for rows in frame.groupby(_GROUP, sort=False).indices.values():
            first = frame.iloc[rows[0]]
            history = {name: first[name] for name in USER_HISTORY.names}
            for name, values in cross_features(history, item_ids[rows], categories[rows], now[rows]).items():
                crosses[name][rows] = values
        out = frame.drop(columns=[*USER_HISTORY.names, HISTORY_TIME, _NOW, _GROUP])
        for name, values in (*context.items(), *crosses.items()):
            out[name] = values
        yield out


def add_ranking_features(examples: DataFrame, time_column: str, category_column: str = "category") -> DataFrame:
    """Examples (joined to ``user_history`` with its row time in HISTORY_TIME, and carrying ``device``,
    ``item_id`` and the item's category) -> the same rows plus REQUEST_CONTEXT and CROSS_FEATURES."""
    schema = _output_schema(examples)
    group = F.concat_ws("|", F.col(USER_ID), F.coalesce(F.unix_micros(HISTORY_TIME).cast("string"), F.lit("-")))
    prepared = examples.withColumn(_NOW, F.unix_micros(time_column) / 1e6).withColumn(_GROUP, group)
    return prepared.mapInPandas(partial(_compute, category_column=category_column), schema)
