"""Training launcher of the retrieval models: Spark prepares the examples as shards, TensorFlow streams them.

    spark-submit spark_jobs/train_retrieval.py --domain retail --date 2024-03-12 --release 20240313-nightly
    python -m spark_jobs.train_retrieval --help

Spark reads the retrieval training set ``paths.training(domain, "retrieval")`` (the positive interactions,
written by ``spark_jobs/training_sets.py``; when it does not exist, the compacted lake's positive events) and keeps
the ``--days`` days ending at ``--date`` (the logical date: nothing after it is read). Nothing is
collected to the driver: Spark builds the training examples (each interaction on a catalog item with
the user's previous distinct items, :mod:`spark_jobs.retrieval_examples`) and writes them as shuffled
Parquet shards into the staged release, and aggregates the decayed popularity per segment and item
(segments x items rows come back). Spark then stops and the two-tower and content towers stream the
shards through ``tf.data`` (:class:`models.retrieval.examples.RetrievalExamples`: a few chunks in memory
whatever the window's size; Keras progress per epoch; TensorBoard logs in the release's
``logs/retrieval``); the ScaNN indexes and the popularity table are built into the staged release
``--release`` (:func:`models.release.train_retrieval_from_examples`), and the shards are removed.

What still grows with the data in this process: the catalog, the users' profiles (one row each) and
the user-id embedding table (trained by Adagrad, which updates only the rows of a step's ids:
:func:`models.retrieval.two_tower.id_tables_apart`). Scaling out: the Spark half runs on any cluster (``--master`` /
spark-submit); the towers run on one worker (the ranker's trainer shows the multi-worker form,
:mod:`models.ranking.trainer`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import date

import pandas as pd

from common.lake import read_catalog, read_users
from common.paths import DataPaths
from spark_jobs.jobs import data_paths, day_end, day_start, job_parser, parse_date, run_main, step
from spark_jobs.session import job_session

JOB = "train-retrieval"
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


def interaction_rows(spark, paths: DataPaths, domain: str, first: date, last: date):  # noqa: ANN001, ANN201
    """The domain's positive interactions of the window (``INTERACTION_COLUMNS``, a Spark DataFrame), from
    the training set or else the compacted lake."""
    from pyspark.sql import functions as F

    source = paths.training(domain, "retrieval")
    if source.exists():
        rows = in_window(spark.read.parquet(str(source)), "timestamp", first, last)
    else:
        from spark_jobs.lake_io import read_compacted_events
        from spark_jobs.training_sets import positive_interactions

        events = read_compacted_events(spark, paths, last, first).where(F.col("domain") == domain)
        rows = positive_interactions(events, first, last)
    return rows.where(F.col("domain") == domain).select(*INTERACTION_COLUMNS)


def read_interactions(spark, paths: DataPaths, domain: str, first: date, last: date) -> pd.DataFrame:  # noqa: ANN001
    """:func:`interaction_rows` collected to the driver (for sets built there, e.g. the bootstrap ranking set)."""
    return to_pandas_utc(interaction_rows(spark, paths, domain, first, last), "timestamp")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser("Train the two-tower and content retrievers of a domain into a staged release.")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of both towers (default: the models')")
    args = parser.parse_args(argv)
    from dataclasses import replace

    from pyspark.sql import functions as F

    from common.registry import EXAMPLES_DIR
    from models.release import (
        retrieval_as_of,
        retrieval_inputs,
        staged_dir,
        train_retrieval_from_examples,
        training_window,
    )
    from models.retrieval.popularity import PopularityTable
    from spark_jobs.retrieval_examples import popularity_scores, retrieval_examples, write_examples

    paths = data_paths(args)
    window = training_window(args.date, args.days)
    release = staged_dir(args.domain, args.release)
    catalog, users = read_catalog(paths, args.domain), read_users(paths, args.domain)
    profiles, settings = retrieval_inputs(users)
    if args.epochs is not None:
        settings = replace(settings, two_tower=replace(settings.two_tower, epochs=args.epochs),
                           content=replace(settings.content, epochs=args.epochs))
    examples_dir, as_of = release / EXAMPLES_DIR, retrieval_as_of(window)
    with job_session("recsys-train-retrieval", args.master, [paths.training(args.domain, "retrieval")]) as spark:
        rows = interaction_rows(spark, paths, args.domain, *window)
        catalog_items = spark.read.parquet(str(paths.catalog(args.domain))).select("item_id")
        with step(JOB, "examples") as counts:
            examples = write_examples(retrieval_examples(rows, catalog_items, settings.history_length), examples_dir,
                                      settings.two_tower.seed)
            counts["rows"], counts["shards"] = examples.rows, len(examples.source)
        with step(JOB, "popularity") as counts:
            segments = None if settings.segment_column is None else spark.read.parquet(str(paths.users(args.domain))) \
                .select("user_id", F.col(settings.segment_column).cast("string").alias("segment"))
            scores = popularity_scores(rows, segments, as_of, settings.popularity)
            counts["items"], counts["segments"] = scores["item_id"].nunique(), scores["segment"].nunique()
    # Spark has stopped: the towers stream the examples
    popularity = PopularityTable.from_scores(scores, as_of, settings.popularity)
    summary = train_retrieval_from_examples(release, examples, popularity, catalog, profiles, window, settings,
                                            verbose=0 if args.quiet else 2)
    shutil.rmtree(examples_dir, ignore_errors=True)
    print(f"[train-retrieval] {args.domain} -> {release}: {summary['interactions']} interactions, "
          f"timings {summary['timings']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, JOB))
