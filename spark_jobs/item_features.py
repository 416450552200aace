"""The item feature views: ``item_features`` (attributes, slow popularity) and ``item_stats`` (its batch
initialisation of the fast-moving state the streaming job keeps fresh).

Popularity counts the domain's positive events (``positive_events`` of the domain config); CTR is
``slate_clicks / impressions`` smoothed by :func:`common.features.smoothed_ctr` (shared with the
streaming job), so an item with few impressions is not ranked on noise.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.features import ITEM_ID, smoothed_ctr
from spark_jobs.interactions import DAY, SNAPSHOT, within

KEY = [ITEM_ID, SNAPSHOT]
PRICE_BUCKETS = 10
WINDOWS = (1, 7, 30)


def item_daily(daily: DataFrame) -> DataFrame:
    """Per (item, day): positive events, impressions and slate clicks (summed over users)."""
    return daily.groupBy(ITEM_ID, DAY).agg(*(F.sum(c).alias(c) for c in ("positives", "impressions", "slate_clicks")))


def item_totals(expanded: DataFrame) -> DataFrame:
    """Per (item, snapshot): positive events, impressions and slate clicks over the last 1, 7 and 30 days
    (``expanded``: :func:`item_daily` expanded with a horizon of ``max(WINDOWS)`` days)."""
    sums = [
        F.sum(within(days, source)).alias(f"{name}_{days}d")
        for days in WINDOWS
        for name, source in (("popularity", "positives"), ("impressions", "impressions"), ("clicks", "slate_clicks"))
    ]
    return expanded.groupBy(*KEY).agg(*sums)


def catalog_attributes(catalog: DataFrame) -> DataFrame:
    """Static item attributes; ``price_bucket`` is the price decile within the item's domain (equal prices
    share a bucket): ``min(9, floor(10 * percent_rank(price)))``."""
    rank = F.percent_rank().over(Window.partitionBy("domain").orderBy("price"))
    return catalog.select(
        ITEM_ID,
        "price",
        F.least(F.floor(rank * PRICE_BUCKETS), F.lit(PRICE_BUCKETS - 1)).alias("price_bucket"),
        "category",
        F.trim(F.split(F.col("category"), ">").getItem(0)).alias("category_l1"),
        "margin",
        F.unix_seconds("launched_at").alias("launched_ts"),
        "inventory",
    )


def _with_totals(totals: DataFrame, catalog: DataFrame, universe: DataFrame) -> DataFrame:
    joined = universe.join(totals, KEY, "left").join(catalog_attributes(catalog), ITEM_ID, "left")
    return joined.fillna(0, subset=[c for c in totals.columns if c not in KEY])


def item_features(totals: DataFrame, catalog: DataFrame, universe: DataFrame) -> DataFrame:
    joined = _with_totals(totals, catalog, universe)
    return joined.select(
        *KEY, "price", "price_bucket", "category", "category_l1", "margin", "launched_ts",
        "popularity_7d", "popularity_30d",
        smoothed_ctr(F.col("clicks_7d"), F.col("impressions_7d")).alias("ctr_7d"),
        smoothed_ctr(F.col("clicks_30d"), F.col("impressions_30d")).alias("ctr_30d"),
    )


def item_stats(totals: DataFrame, catalog: DataFrame, universe: DataFrame) -> DataFrame:
    joined = _with_totals(totals, catalog, universe)
    return joined.select(
        *KEY, "popularity_1d", "impressions_1d",
        smoothed_ctr(F.col("clicks_1d"), F.col("impressions_1d")).alias("ctr_1d"),
        "inventory",
        (F.col("inventory") > 0).alias("in_stock"),
    )
