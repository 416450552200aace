"""Training launcher of the DCN-v2 ranker: Spark prepares, TensorFlow fits on the driver.

    spark-submit spark_jobs/train_ranker.py --domain retail --date 2024-03-12 --release 20240313-nightly
    python -m spark_jobs.train_ranker --help

Spark reads the point-in-time ranking set ``paths.training(domain, "ranking")`` (impressions with
their served ``position``, ``clicked``/``converted`` labels, the ``ranking_v1`` features and the
cross features of :mod:`common.cross_features`, written by ``spark_jobs/training_sets.py``), keeps the
``--days`` days ending at ``--date`` and only the columns the ranker reads, and collects them to the
driver. There the ranker is trained with its position tower (position-bias correction; the served
model has no position input), both DCN structures are compared on the latest
:data:`models.release.RANKER_VALID_FRACTION` of the window, and the better one is exported
(SavedModel + the fast NumPy export, parity-checked) into the staged release ``--release``
(:func:`models.release.train_ranker_into`; TensorBoard logs in the release's ``logs/ranker``).

Scaling out: as for the retrieval launcher (see ``spark_jobs/train_retrieval.py``) -- a bigger
driver first (a ranking set is ~50 floats per impression: 10 M impressions ~ 2 GB), then Spark writes
sharded TFRecords and the ranker trains under ``tf.distribute.MultiWorkerMirroredStrategy``; its
input pipeline already accepts a batched ``tf.data.Dataset`` instead of a DataFrame.
"""

from __future__ import annotations

import sys

from common.features import EVENT_TIMESTAMP
from spark_jobs.jobs import data_paths, run_main
from spark_jobs.session import job_session
from spark_jobs.train_retrieval import in_window, to_pandas_utc, training_parser

KEPT = ("request_id", "user_id", "item_id", EVENT_TIMESTAMP, "position", "clicked", "converted")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser("Train the DCN-v2 ranker of a domain (position-bias corrected) into a staged release.")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the ranker config's)")
    parser.add_argument("--no-position-correction", action="store_true",
                        help="train without the position tower (for experiments only)")
    args = parser.parse_args(argv)
    from dataclasses import replace

    from models.ranking.config import RankerConfig
    from models.release import staged_dir, train_ranker_into, training_window

    config = RankerConfig(position_correction=not args.no_position_correction)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    paths = data_paths(args)
    first, last = training_window(args.date, args.days)
    source = paths.training(args.domain, "ranking")
    if not source.exists():
        parser.error(f"no ranking set at {source}: run the training-sets job first")
    release = staged_dir(args.domain, args.release)
    with job_session("recsys-train-ranker", args.master) as spark:
        frame = in_window(spark.read.parquet(str(source)), EVENT_TIMESTAMP, first, last)
        columns = [c for c in (*KEPT, *config.features) if c in frame.columns]
        impressions = to_pandas_utc(frame.select(*columns), EVENT_TIMESTAMP)
    summary = train_ranker_into(release, impressions, (first, last), config, verbose=not args.quiet)
    print(f"[train-ranker] {args.domain} -> {release}: {summary['structure']} {summary['metrics']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "train-ranker"))
