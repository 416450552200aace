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

A domain without an impression log (``logs_impressions: false`` in ``config/domains.yaml``), or a
window without a single impression, trains on the bootstrap ranking set instead
(:mod:`spark_jobs.bootstrap_ranking`): each user's later interactions against the candidates the
release's own retrievers (staged by ``train_retrieval.py`` before this job) return at that time, with
the same point-in-time features; no position tower (there are no served positions). The set's
figures go to ``summary/ranker.json`` (``ranking_data``).

Scaling out: as for the retrieval launcher (see ``spark_jobs/train_retrieval.py``) -- a bigger
driver first (a ranking set is ~50 floats per impression: 10 M impressions ~ 2 GB), then Spark writes
sharded TFRecords and the ranker trains under ``tf.distribute.MultiWorkerMirroredStrategy``; its
input pipeline already accepts a batched ``tf.data.Dataset`` instead of a DataFrame.
"""

from __future__ import annotations

import sys
from datetime import date

import pandas as pd

from common.errors import DataError
from common.features import EVENT_TIMESTAMP
from common.paths import DataPaths
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

    from common.domains import domain as domain_config
    from models.ranking.config import RankerConfig
    from models.release import staged_dir, train_ranker_into, training_window

    config = RankerConfig(position_correction=not args.no_position_correction)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    paths = data_paths(args)
    first, last = training_window(args.date, args.days)
    source = paths.training(args.domain, "ranking")
    logs_impressions = domain_config(args.domain).logs_impressions
    if logs_impressions and not source.exists():
        parser.error(f"no ranking set at {source}: run the training-sets job first")
    with job_session("recsys-train-ranker", args.master) as spark:
        frame = read_impressions(spark, str(source), first, last, config.features) if logs_impressions else None
        ranking_data: str | dict = "impressions"
        if frame is None or frame.empty:
            why = "logs no impressions" if not logs_impressions else f"has no impression in {first}..{last}"
            print(f"[train-ranker] {args.domain} {why}: training on the bootstrap ranking set", flush=True)
            frame, ranking_data = read_bootstrap(spark, paths, args.domain, args.release, (first, last), config.features)
            config = replace(config, position_correction=False)  # no served positions to correct for
    release = staged_dir(args.domain, args.release)
    summary = train_ranker_into(release, frame, (first, last), config, verbose=not args.quiet,
                                ranking_data=ranking_data)
    print(f"[train-ranker] {args.domain} -> {release}: {summary['structure']} {summary['metrics']}", flush=True)
    return 0


def read_bootstrap(spark, paths: DataPaths, domain: str, version: str, window: tuple[date, date],  # noqa: ANN001
                   features: list[str]) -> tuple[pd.DataFrame, dict]:
    """The bootstrap ranking set (:mod:`spark_jobs.bootstrap_ranking`) from the staged release's retrievers."""
    from common.registry import ArtifactRegistry
    from models.release import RETRIEVAL_DIR
    from spark_jobs.bootstrap_ranking import bootstrap_ranking_set

    retrieval = ArtifactRegistry().staging_path(domain, version) / RETRIEVAL_DIR
    if not retrieval.is_dir():
        raise DataError(f"no retrievers staged at {retrieval}: the bootstrap ranking set of {domain} is built "
                        "from the release's own retrievers (run train_retrieval first)")
    built = bootstrap_ranking_set(spark, paths, domain, *window, retrieval, [*KEPT, *features])
    return built.frame, built.summary


def read_impressions(spark, source: str, first: date, last: date, features: list[str]) -> pd.DataFrame:  # noqa: ANN001
    """The ranking set's impressions of the window, with the columns the ranker reads."""
    frame = in_window(spark.read.parquet(source), EVENT_TIMESTAMP, first, last)
    return to_pandas_utc(frame.select(*[c for c in (*KEPT, *features) if c in frame.columns]), EVENT_TIMESTAMP)


if __name__ == "__main__":
    sys.exit(run_main(main, "train-ranker"))
