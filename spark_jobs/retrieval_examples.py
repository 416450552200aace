"""Spark transforms of the retrieval training: the examples and the popularity scores, nothing collected.

:func:`retrieval_examples` builds the rows :mod:`models.retrieval.examples` describes with window
functions (each user's previous distinct catalog items, newest first), :func:`write_examples` writes
them as shuffled Parquet shards the trainer streams, and :func:`popularity_scores` aggregates the
decayed popularity of :mod:`models.retrieval.popularity` per segment and item (a table of segments x
items, the only thing that comes back to the driver).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.retrieval.examples import EXAMPLE_COLUMNS, RetrievalExamples, write_meta
from models.retrieval.popularity import GLOBAL, PopularityConfig

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

ROWS_PER_SHARD = 250_000
LOOKBACK_FACTOR = 4  # previous rows a history is taken from, per history slot


def retrieval_examples(interactions: DataFrame, catalog_items: DataFrame, history_length: int,
                       lookback: int | None = None) -> DataFrame:
    """``user_id, item_id, weight, history`` of the interactions on catalog items (``catalog_items``:
    an ``item_id`` column). ``history``: the distinct items of the user's ``lookback`` previous rows
    (default ``LOOKBACK_FACTOR * history_length``), newest first, without the row's own item, at most
    ``history_length`` -- the same as :func:`models.retrieval.data.with_histories` whenever those rows
    hold more than ``history_length`` distinct items (and when they are all of the user's rows)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lookback = lookback or LOOKBACK_FACTOR * history_length
    kept = interactions.join(F.broadcast(catalog_items.select("item_id").distinct()), "item_id", "left_semi")
    before = Window.partitionBy("user_id").orderBy("timestamp", "item_id").rowsBetween(-lookback, -1)
    previous = F.array_distinct(F.reverse(F.collect_list("item_id").over(before)))
    history = F.slice(F.array_remove(previous, F.col("item_id")), 1, history_length)
    return kept.select(F.col("user_id").cast("string"), F.col("item_id").cast("string"),
                       F.col("weight").cast("float"), history.alias("history"))


def write_examples(examples: DataFrame, directory: Path, seed: int = 0,
                   rows_per_shard: int = ROWS_PER_SHARD) -> RetrievalExamples:
    """Write ``examples`` as ``part-*.parquet`` shards of at most ``rows_per_shard`` rows in random order (rows
    spread over the session's shuffle partitions at random, then shuffled inside each), then
    ``examples.json``; returns the shards (rows counted from their metadata: no extra pass over the data)."""
    from pyspark.sql import functions as F

    shuffled = (examples.withColumn("_r", F.rand(seed)).repartition("_r").sortWithinPartitions("_r")
                .select(*EXAMPLE_COLUMNS))
    shuffled.write.mode("overwrite").option("maxRecordsPerFile", rows_per_shard).parquet(str(directory))
    written = RetrievalExamples.from_shards(directory)
    write_meta(directory, written.rows)
    return written


def popularity_scores(interactions: DataFrame, segments: DataFrame | None, as_of: pd.Timestamp,
                      config: PopularityConfig) -> pd.DataFrame:
    """``segment, item_id, score`` as :func:`models.retrieval.popularity.decayed_scores` computes them, for
    ``GLOBAL`` and each segment of ``segments`` (``user_id, segment``)."""
    from pyspark.sql import functions as F

    end = F.lit(as_of.timestamp())
    age_days = (end - F.col("timestamp").cast("double")) / F.lit(86_400.0)
    scored = (interactions.where((age_days >= 0) & (age_days < config.window_days))
              .select("user_id", F.col("item_id").cast("string").alias("item_id"),
                      (F.col("weight").cast("double") * F.pow(F.lit(2.0), -age_days / config.half_life_days))
                      .alias("score")))
    parts = scored.select(F.lit(GLOBAL).alias("segment"), "item_id", "score")
    if segments is not None:
        labelled = scored.join(segments.where(F.col("segment").isNotNull()), "user_id")
        parts = parts.unionByName(labelled.select(F.col("segment").cast("string"), "item_id", "score"))
    return parts.groupBy("segment", "item_id").agg(F.sum("score").alias("score")).toPandas()
