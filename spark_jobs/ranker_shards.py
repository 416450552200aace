"""Spark writes the ranker's training set as shards (:mod:`models.ranking.shards`), never collecting it.

The ranking set's rows of the window are typed as the ranker reads them (numeric float, categorical
string with ``""`` for null, labels float, the served position int with 0 for unknown), split into
training and validation -- the latest :data:`models.release.RANKER_VALID_FRACTION` by event time,
else (too few distinct times) a seeded split of whole requests -- and written in random order, at
least one training shard per trainer worker. Only the label counts come back to the driver.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812

from common.errors import DataError
from common.features import EVENT_TIMESTAMP
from models.ranking.config import CLICK_LABEL, CONVERSION_LABEL, POSITION
from models.ranking.shards import ROWS_PER_SHARD, TRAIN, VALID, ShardSet

SPLIT_BUCKETS = 10_000


def typed_columns(frame: DataFrame, numeric: Sequence[str], categorical: Sequence[str], position: bool) -> list[Column]:
    """The shard columns (see the module docstring), from ``frame``'s."""
    columns = [F.col(n).cast("float").alias(n) for n in numeric]
    columns += [F.coalesce(F.col(n).cast("string"), F.lit("")).alias(n) for n in categorical]
    columns += [F.coalesce(F.col(n).cast("float"), F.lit(0.0)).alias(n) for n in (CLICK_LABEL, CONVERSION_LABEL)
                if n in frame.columns]
    if position:
        columns.append(F.coalesce(F.col(POSITION).cast("int"), F.lit(0)).alias(POSITION))
    return columns


def validation_flag(frame: DataFrame, valid_fraction: float, seed: int) -> Column:
    """True for the validation rows: after the ``1 - valid_fraction`` quantile of the event time, or -- when
    that leaves a side empty -- a seeded ``valid_fraction`` of the requests (of the rows without one)."""
    if EVENT_TIMESTAMP in frame.columns:
        seconds = F.col(EVENT_TIMESTAMP).cast("double")
        cut = frame.select(seconds.alias("t")).approxQuantile("t", [1.0 - valid_fraction], 0.0001)
        if cut and cut[0] is not None:
            by_time = seconds > F.lit(cut[0])
            later = frame.select(F.sum(by_time.cast("long")).alias("n"), F.count(F.lit(1)).alias("rows")).first()
            if 0 < (later["n"] or 0) < later["rows"]:
                return by_time
    key = F.col("request_id") if "request_id" in frame.columns else F.monotonically_increasing_id()
    bucket = F.pmod(F.xxhash64(key.cast("string"), F.lit(seed)), F.lit(SPLIT_BUCKETS))
    return bucket < F.lit(max(1, round(valid_fraction * SPLIT_BUCKETS)))


def write_ranking_shards(frame: DataFrame, directory: Path, numeric: Sequence[str], categorical: Sequence[str],
                         position: bool, valid_fraction: float, seed: int = 0, min_shards: int = 1,
                         rows_per_shard: int = ROWS_PER_SHARD) -> ShardSet:
    """Write ``frame``'s rows as a shard directory (removed first if it exists); raises :class:`DataError`
    when the labels are not 0/1 or a side is empty."""
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    flagged = frame.select(*typed_columns(frame, numeric, categorical, position),
                           validation_flag(frame, valid_fraction, seed).alias("_valid"),
                           F.col(CLICK_LABEL).alias("_label")).cache()
    try:
        counts = {(row["_valid"], row["_label"]): row["n"] for row in
                  flagged.groupBy("_valid", "_label").agg(F.count(F.lit(1)).alias("n")).collect()}
        other = sum(n for (_, label), n in counts.items() if label not in (0, 1))
        if other:
            raise DataError(f"the ranking set has {other:,} rows whose {CLICK_LABEL!r} is not 0/1")
        rows = {side: sum(n for (valid, _), n in counts.items() if valid == (side == VALID)) for side in (TRAIN, VALID)}
        positives = {side: sum(n for (valid, label), n in counts.items() if valid == (side == VALID) and label == 1)
                     for side in (TRAIN, VALID)}
        if not rows[TRAIN] or not rows[VALID]:
            raise DataError(f"the ranking set's split left a side empty: {rows}")
        for side in (TRAIN, VALID):
            part = flagged.filter(F.col("_valid") == (side == VALID)).drop("_valid", "_label")
            shards = max(min_shards if side == TRAIN else 1, math.ceil(rows[side] / rows_per_shard))
            (part.repartition(shards).sortWithinPartitions(F.rand(seed))  # round robin: even, mixed shards
             .write.mode("overwrite").parquet(str(directory / side)))
        columns = [c for c in flagged.columns if not c.startswith("_")]
    finally:
        flagged.unpersist()
    result = ShardSet(directory, rows, positives, columns)
    result.save()
    return result
