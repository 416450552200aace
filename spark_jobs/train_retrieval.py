"""Training launcher of the retrieval models: Spark prepares, TensorFlow fits on the driver.

    spark-submit spark_jobs/train_retrieval.py --domain retail --date 2024-03-12 --release 20240313-nightly
    python -m spark_jobs.train_retrieval --help

Spark reads the point-in-time training set ``paths.training(domain, "retrieval")`` (written by
``spark_jobs/training_sets.py``; when it does not exist, the compacted lake's positive events), keeps
the ``--days`` days ending at ``--date`` (the logical date: nothing after it is read), and collects the
``(user, item, time, event, weight)`` rows -- a few bytes each -- to the driver, where the two-tower
and content towers are fitted with TensorFlow (Keras progress per epoch; TensorBoard logs in the
release's ``logs/retrieval``) and the ScaNN indexes and popularity tables are built into the staged
release ``--release`` (:func:`models.release.train_retrieval_into`).

Scaling out: the Spark half already runs on any cluster (``--master`` / spark-submit). The TensorFlow
half still fits on the driver: give it a bigger driver (``--driver-memory``, a GPU node) first. The
ranker's launcher shows the next step (``spark_jobs/train_ranker.py``): Spark writes the prepared rows
as Parquet shards and a trainer process streams them under ``MultiWorkerMirroredStrategy``
(:mod:`models.ranking.trainer`). Not done here yet: the retrieval towers also build each user's
history in Python and their id embeddings train with Keras Adam, which decays the moments of every
row at every step (O(users) per step); at millions of users they want Adagrad or lazy updates for the
embedding tables first.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import pandas as pd

from common.lake import read_catalog, read_users
from common.paths import DataPaths
from spark_jobs.jobs import data_paths, day_end, day_start, job_parser, parse_date, run_main
from spark_jobs.session import job_session

INTERACTION_COLUMNS = ["user_id", "item_id", "timestamp", "event_type", "weight"]


def training_parser(description: str) -> argparse.ArgumentParser:
    """The arguments both training launchers share (plus ``--master`` and ``--data-dir``)."""
    parser = job_parser(description)
    parser.add_argument("--domain", required=True, help="domain to train (retail, banking, ...)")
    parser.add_argument("--date", type=parse_date, required=True,
                        help="logical date (YYYY-MM-DD): the training window ends with this day")
    parser.add_argument("--days", type=int, default=14, help="length of the training window in days")
    parser.add_argument("--release", required=True,
                        help="release version to write into (its staging directory; claimed if not staged yet)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return parser


def in_window(frame, column: str, first: date, last: date):  # noqa: ANN001, ANN201  (pyspark DataFrame)
    """Rows of a Spark DataFrame whose ``column`` lies in the days ``first``..``last``."""
    from pyspark.sql import functions as F

    return frame.where((F.col(column) >= F.lit(day_start(first))) & (F.col(column) < F.lit(day_end(last))))


def to_pandas_utc(frame, time_column: str) -> pd.DataFrame:  # noqa: ANN001  (pyspark DataFrame)
    """Collect to the driver; Spark's session-time (UTC) timestamps come back tz-aware UTC."""
    out = frame.toPandas()
    out[time_column] = pd.to_datetime(out[time_column]).dt.tz_localize(None).dt.tz_localize("UTC")
    return out


def read_interactions(spark, paths: DataPaths, domain: str, first: date, last: date) -> pd.DataFrame:  # noqa: ANN001
    """The domain's positive interactions of the window, from the training set or else the compacted lake."""
    from pyspark.sql import functions as F

    source = paths.training(domain, "retrieval")
    if source.exists():
        rows = in_window(spark.read.parquet(str(source)), "timestamp", first, last)
    else:
        from spark_jobs.lake_io import read_compacted_events
        from spark_jobs.training_sets import positive_interactions

        events = read_compacted_events(spark, paths, last, first).where(F.col("domain") == domain)
        rows = positive_interactions(events, first, last)
    return to_pandas_utc(rows.where(F.col("domain") == domain).select(*INTERACTION_COLUMNS), "timestamp")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser("Train the two-tower and content retrievers of a domain into a staged release.")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of both towers (default: the models')")
    args = parser.parse_args(argv)
    from dataclasses import replace

    from models.release import segment_column, staged_dir, train_retrieval_into, training_window
    from models.retrieval.pipeline import RetrievalSettings

    paths = data_paths(args)
    first, last = training_window(args.date, args.days)
    release = staged_dir(args.domain, args.release)
    with job_session("recsys-train-retrieval", args.master) as spark:
        interactions = read_interactions(spark, paths, args.domain, first, last)
    catalog, users = read_catalog(paths, args.domain), read_users(paths, args.domain)
    settings = RetrievalSettings(segment_column=segment_column(users) if not users.empty else None)
    if args.epochs is not None:
        settings = replace(settings, two_tower=replace(settings.two_tower, epochs=args.epochs),
                           content=replace(settings.content, epochs=args.epochs))
    summary = train_retrieval_into(release, interactions, catalog, users, (first, last), settings,
                                   verbose=0 if args.quiet else 2)
    print(f"[train-retrieval] {args.domain} -> {release}: {summary['interactions']} interactions, "
          f"timings {summary['timings']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "train-retrieval"))
