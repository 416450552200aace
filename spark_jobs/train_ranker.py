"""Training launcher of the DCN-v2 ranker: Spark writes the training set as shards, a trainer process fits.

    spark-submit spark_jobs/train_ranker.py --domain retail --date 2024-03-12 --release 20240313-nightly
    python -m spark_jobs.train_ranker --help

Spark reads the point-in-time ranking set ``paths.training(domain, "ranking")`` (impressions with
their served ``position``, ``clicked``/``converted`` labels, the ``ranking_v1`` features and the
cross features of :mod:`common.cross_features`, written by ``spark_jobs/training_sets.py``), keeps the
``--days`` days ending at ``--date`` and only the columns the ranker reads, and writes them -- typed,
split (the latest :data:`models.release.RANKER_VALID_FRACTION` validates) and shuffled -- as Parquet
shards in the staged release (:mod:`spark_jobs.ranker_shards`); nothing is collected to the driver.
Spark then stops, and the trainer (:mod:`models.ranking.trainer`, its own process) streams the shards
through ``tf.data``: it trains the ranker with its position tower (position-bias correction; the served
model has no position input) in the live release's DCN structure (``--structure``; both, compared on the
validation shards, when nothing is live yet), and exports it (SavedModel + the fast NumPy export, parity-checked) into the release ``--release``
(:func:`models.release.train_ranker_from_shards`; TensorBoard logs in the release's ``logs/ranker``).

``--workers N`` (or ``RECSYS_TRAINER_WORKERS``) runs N trainer processes under
``tf.distribute.MultiWorkerMirroredStrategy``, each reading its own shards; on a cluster, start the
trainer on each node with its ``TF_CONFIG`` instead (see :mod:`models.ranking.trainer`).

A domain without an impression log (``logs_impressions: false`` in ``config/domains.yaml``), or a
window without a single impression, trains on the bootstrap ranking set instead
(:mod:`spark_jobs.bootstrap_ranking`): each user's later interactions against the candidates the
release's own retrievers (staged by ``train_retrieval.py`` before this job) return at that time, with
the same point-in-time features; no position tower (there are no served positions). That set is
built on the driver (one row per sampled user and candidate) and goes to the trainer as shards too. Its
figures go to ``summary/ranker.json`` (``ranking_data``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from common.errors import DataError
from common.features import EVENT_TIMESTAMP
from common.paths import DataPaths
from common.settings import env
from spark_jobs.jobs import data_paths, run_main
from spark_jobs.session import job_session
from spark_jobs.train_retrieval import in_window, training_parser

KEPT = ("request_id", "user_id", "item_id", EVENT_TIMESTAMP, "position", "clicked", "converted")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser("Train the DCN-v2 ranker of a domain (position-bias corrected) into a staged release.")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the ranker config's)")
    parser.add_argument("--no-position-correction", action="store_true",
                        help="train without the position tower (for experiments only)")
    parser.add_argument("--workers", type=int, default=env().trainer_workers,
                        help="trainer processes on this machine (MultiWorkerMirroredStrategy when more than one; "
                             "default: $RECSYS_TRAINER_WORKERS or 1)")
    parser.add_argument("--structure", choices=("live", "both", "stacked", "parallel"), default="live",
                        help="DCN structure: the live release's (default; both when there is none), both compared, "
                             "or one")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    from dataclasses import replace

    from common.domains import domain as domain_config
    from models.ranking.config import RankerConfig
    from models.release import staged_dir, train_ranker_from_shards, train_ranker_into, training_window

    config = RankerConfig(position_correction=not args.no_position_correction,
                          structure=structure_of(args.domain, args.structure))
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    paths = data_paths(args)
    first, last = training_window(args.date, args.days)
    source = paths.training(args.domain, "ranking")
    logs_impressions = domain_config(args.domain).logs_impressions
    if logs_impressions and not source.exists():
        parser.error(f"no ranking set at {source}: run the training-sets job first")
    window = (first, last)
    shards, frame, ranking_data = None, None, "impressions"
    with job_session("recsys-train-ranker", args.master, [source] if logs_impressions else ()) as spark:
        if logs_impressions:
            shards, config = write_impression_shards(spark, str(source), window, config,
                                                     lambda: staged_dir(args.domain, args.release), args.workers)
        if shards is None:
            why = "logs no impressions" if not logs_impressions else f"has no impression in {first}..{last}"
            print(f"[train-ranker] {args.domain} {why}: training on the bootstrap ranking set", flush=True)
            frame, ranking_data = read_bootstrap(spark, paths, args.domain, args.release, window, config.features)
            config = replace(config, position_correction=False)  # no served positions to correct for
    # Spark has stopped: the trainer process(es) stream the shards
    release = staged_dir(args.domain, args.release)
    if shards is not None:
        summary = train_ranker_from_shards(release, shards, window, config, not args.quiet, ranking_data, args.workers)
    else:
        summary = train_ranker_into(release, frame, window, config, verbose=not args.quiet, ranking_data=ranking_data,
                                    workers=args.workers)
    print(f"[train-ranker] {args.domain} -> {release}: {summary['structure']} {summary['metrics']}", flush=True)
    return 0


def structure_of(domain: str, choice: str) -> str | None:
    """The DCN structure to train (None: both, compared): ``live`` is the live release's kept one, so a night
    trains one structure; both when nothing is live (or its summary does not say)."""
    if choice != "live":
        return None if choice == "both" else choice
    from common.registry import RANKER_DIR, ArtifactRegistry
    from models.ranking.config import STRUCTURES
    from models.release import read_summaries

    registry = ArtifactRegistry()
    live = registry.current(domain)
    if live is None:
        return None
    structure = read_summaries(registry.release_path(domain, live)).get(RANKER_DIR, {}).get("structure")
    return structure if structure in STRUCTURES else None


def write_impression_shards(spark, source: str, window: tuple[date, date], config: Any,  # noqa: ANN001
                            release: Callable[[], Path], workers: int) -> tuple[Any, Any]:
    """The window's impressions as the trainer's shards in the release (``release()`` stages it: only once
    there are impressions; :mod:`spark_jobs.ranker_shards`) and the config cut to the set's features;
    ``(None, config)`` when the window has no impression."""
    from pyspark.sql import functions as F

    from common.registry import SHARDS_DIR
    from models.ranking.config import POSITION
    from models.release import RANKER_VALID_FRACTION, check_labels, ranker_config
    from spark_jobs.ranker_shards import write_ranking_shards

    frame = in_window(spark.read.parquet(source), EVENT_TIMESTAMP, *window)
    frame = frame.select(*[c for c in (*KEPT, *config.features) if c in frame.columns])
    if frame.limit(1).count() == 0:
        return None, config
    positioned = POSITION in frame.columns and frame.where(F.col(POSITION).isNotNull()).limit(1).count() > 0
    span = f"the ranking set of {window[0]}..{window[1]} (impressions)"
    config = ranker_config(config, frame.columns, positioned, span)
    shards = write_ranking_shards(frame, release() / SHARDS_DIR, config.numeric, config.categorical,
                                  config.position_correction, RANKER_VALID_FRACTION, config.seed, min_shards=workers)
    figures = shards.as_figures()
    check_labels(span, figures["positives"], figures["negatives"], figures["rows"])
    return shards, config


def read_bootstrap(spark, paths: DataPaths, domain: str, version: str, window: tuple[date, date],  # noqa: ANN001
                   features: list[str]) -> tuple[pd.DataFrame, dict]:
    """The bootstrap ranking set (:mod:`spark_jobs.bootstrap_ranking`) from the staged release's retrievers."""
    from common.registry import RETRIEVAL_DIR, ArtifactRegistry
    from spark_jobs.bootstrap_ranking import bootstrap_ranking_set

    retrieval = ArtifactRegistry().staging_path(domain, version) / RETRIEVAL_DIR
    if not retrieval.is_dir():
        raise DataError(f"no retrievers staged at {retrieval}: the bootstrap ranking set of {domain} is built "
                        "from the release's own retrievers (run train_retrieval first)")
    built = bootstrap_ranking_set(spark, paths, domain, *window, retrieval, [*KEPT, *features])
    return built.frame, built.summary


if __name__ == "__main__":
    sys.exit(run_main(main, "train-ranker"))
