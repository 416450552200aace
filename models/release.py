"""The release builder: stage a versioned release, train into it, check it, evaluate it, finalize it.

The layout of one release (``retrieval/``, ``ranker/``, ``catalog.parquet``, ``logs/``, ``summary/``) is
defined in :mod:`common.registry`.

The stages are separate calls so the nightly DAG can run them as separate tasks (the training ones
under spark-submit, see ``spark_jobs/train_retrieval.py`` and ``spark_jobs/train_ranker.py``):
:func:`stage_release` -> :func:`train_retrieval_into` -> :func:`check_indexes` ->
:func:`train_ranker_into` -> :func:`models.evaluation.release_evaluation.evaluate_release` ->
:func:`finalize_release`. A release is never
promoted here: promotion is the Airflow gate's job. :func:`orchestration.build.build_release` runs every
stage in one process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.errors import DataError
from common.paths import DataPaths
from common.registry import (
    CATALOG_FILE,
    LOGS_DIR,
    MANIFEST,
    RANKER_DIR,
    RETRIEVAL_DIR,
    SHARDS_DIR,
    SUMMARY_DIR,
    ArtifactRegistry,
    Manifest,
)
from models.evaluation.lake_samples import INDEX_CHECK_USERS, index_check_histories

MIN_INDEX_RECALL = 0.95  # ScaNN recall@100 against exact search, required of every release
INDEX_TUNING_MARGIN = 0.01  # the tuning users must reach the floor plus this (the judging users differ)
RANKER_VALID_FRACTION = 0.15  # latest share of the ranking set kept for early stopping / validation AUC


class ReleaseCheckFailed(DataError):
    """A staged release failed one of its checks (index recall, export parity): retrying cannot fix it."""


def training_window(logical_date: date, days: int) -> tuple[date, date]:
    """The ``days`` days ending at ``logical_date`` (both included)."""
    if days < 1:
        raise ValueError("the training window needs at least one day")
    return logical_date - timedelta(days=days - 1), logical_date


def stage_release(domain: str, version: str | None = None, registry: ArtifactRegistry | None = None) -> Path:
    """A fresh staging directory for ``domain`` (``version`` defaults to the UTC time)."""
    return (registry or ArtifactRegistry()).stage(domain, version)


def staged_dir(domain: str, version: str, registry: ArtifactRegistry | None = None) -> Path:
    """The staging directory of ``version``, claimed now if nobody staged it yet (launchers run alone too)."""
    registry = registry or ArtifactRegistry()
    path = registry.staging_path(domain, version)
    return path if path.is_dir() else registry.stage(domain, version)


def release_dir(domain: str, version: str, registry: ArtifactRegistry | None = None) -> Path:
    """The directory of ``version``: its staging directory while it is being built, else the release."""
    registry = registry or ArtifactRegistry()
    staging = registry.staging_path(domain, version)
    return staging if staging.is_dir() else registry.release_path(domain, version)


def write_summary(release: Path, stage: str, summary: Mapping[str, Any]) -> Path:
    path = release / SUMMARY_DIR / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return path


def read_summaries(release: Path) -> dict[str, dict[str, Any]]:
    folder = release / SUMMARY_DIR
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


# ---- retrieval --------------------------------------------------------------------------------


def profile_columns(users: pd.DataFrame) -> list[str]:
    """Profile attributes the query tower reads: the scalar ``user_profile`` fields present in ``users``
    (serving sends the same names from the online store)."""
    from common.features import USER_PROFILE

    scalar = [f.name for f in USER_PROFILE.fields if not f.dtype.startswith("Array")]
    return [c for c in scalar if c in users.columns and users[c].notna().any()]


def segment_column(users: pd.DataFrame) -> str | None:
    """The popularity segment: the first categorical profile column (retail: country), else global only."""
    return next((c for c in profile_columns(users) if users[c].dtype == object), None)


def train_retrieval_into(
    release: Path,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    users: pd.DataFrame | None,
    window: tuple[date, date],
    settings: Any = None,
    verbose: int = 2,
) -> dict[str, Any]:
    """Fit the two-tower and content towers on an in-memory ``interactions`` frame (``user_id, item_id,
    timestamp, event_type, weight``), build popularity and both ScaNN indexes into ``release/retrieval``."""
    from models.retrieval.pipeline import frame_inputs

    if interactions.empty:
        raise DataError(f"no positive interaction in the training window {window[0]}..{window[1]}")
    profiles, settings = retrieval_inputs(users, settings)
    interactions = interactions.assign(timestamp=pd.to_datetime(interactions["timestamp"], utc=True))
    examples, popularity = frame_inputs(interactions, catalog, profiles, retrieval_as_of(window), settings)
    return train_retrieval_from_examples(release, examples, popularity, catalog, profiles, window, settings, verbose)


def retrieval_inputs(users: pd.DataFrame | None, settings: Any = None) -> tuple[pd.DataFrame | None, Any]:
    """The profile columns the query tower reads (``None`` without users) and the settings (default: popularity
    segments by :func:`segment_column`)."""
    from models.retrieval.pipeline import RetrievalSettings

    profiles = users[["user_id", *profile_columns(users)]] if users is not None and not users.empty else None
    return profiles, settings or RetrievalSettings(segment_column=segment_column(profiles)
                                                   if profiles is not None else None)


def retrieval_as_of(window: tuple[date, date]) -> pd.Timestamp:
    """Popularity is scored as of the end of the window's last day."""
    return pd.Timestamp(window[1], tz="UTC") + pd.Timedelta(days=1)


def train_retrieval_from_examples(
    release: Path, examples: Any, popularity: Any, catalog: pd.DataFrame, profiles: pd.DataFrame | None,
    window: tuple[date, date], settings: Any, verbose: int = 2,
) -> dict[str, Any]:
    """Fit both towers on ``examples`` (:class:`models.retrieval.examples.RetrievalExamples`, streamed), export
    them with ``popularity`` into ``release/retrieval`` and write ``summary/retrieval.json``."""
    from models.retrieval.pipeline import train_retrieval_bundle

    if examples.rows == 0:
        raise DataError(f"no positive interaction on a catalog item in the training window {window[0]}..{window[1]}")
    print(f"[release] training retrieval on {examples.rows:,} interactions, {len(catalog):,} items "
          f"({window[0]}..{window[1]})", flush=True)
    result = train_retrieval_bundle(examples, popularity, catalog, release / RETRIEVAL_DIR, profiles, settings,
                                    release / LOGS_DIR / RETRIEVAL_DIR, verbose,
                                    window=(str(window[0]), str(retrieval_as_of(window))))
    catalog.to_parquet(release / CATALOG_FILE, index=False)
    summary = {"window": [str(window[0]), str(window[1])], "interactions": examples.rows,
               "users": result["training"]["users"], "items": len(catalog),
               "timings": result["timings"], "segment_column": settings.segment_column,
               "losses": {"two_tower": result["training"]["two_tower"]["losses"],
                          "content": result["training"]["content"]["losses"]}}
    write_summary(release, RETRIEVAL_DIR, summary)
    return summary


def check_indexes(
    release: Path, histories: Mapping[str, Sequence[str]], users: int = INDEX_CHECK_USERS, k: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Recall@k of both ScaNN indexes against exact numpy search, on the queries of (a sample of) real
    users: their two-tower query vectors and content preference vectors.

    Half of the sampled users tune each index's query budget (:func:`models.retrieval.index.widen_budget`:
    the built budget, widened until their recall reaches the floor plus :data:`INDEX_TUNING_MARGIN`; the
    budget is written to the staged index), the other half judge it. Raises :class:`ReleaseCheckFailed`
    when the judged recall is below :data:`MIN_INDEX_RECALL`; the figures, including each tuning step,
    go to ``summary/indexes.json``."""
    from models.retrieval.export import load_retrievers
    from models.retrieval.index import recall_vs_exact, widen_budget

    if (release / MANIFEST).exists():  # its checksums are final: the tuned budget and summary would break them
        raise ReleaseCheckFailed(f"{release} is a finalized release: the index check runs on a staged one")
    retrievers = load_retrievers(release / RETRIEVAL_DIR)
    names = sorted(histories)
    rng = np.random.default_rng(seed)
    chosen = [names[i] for i in rng.choice(len(names), min(users, len(names)), replace=False)] if names else []
    if not chosen:
        raise ReleaseCheckFailed("no user history to build index-check queries from")
    collaborative = np.stack([retrievers.query_embedding(u, None, histories[u]) for u in chosen])
    content = [retrievers.content_embedding(histories[u]) for u in chosen]
    content_queries = np.stack([q for q in content if q is not None])
    out: dict[str, float] = {}
    tuning: dict[str, object] = {}
    for name, index, queries in (("collaborative", retrievers.collaborative_index, collaborative),
                                 ("content", retrievers.content_index, content_queries)):
        embeddings = np.load(release / RETRIEVAL_DIR / name / "item_embeddings.npy")
        tune, judge = (queries[0::2], queries[1::2]) if len(queries) > 1 else (queries, queries)
        top = min(k, len(index))
        tuned, trail = widen_budget(index, embeddings, tune, top, MIN_INDEX_RECALL + INDEX_TUNING_MARGIN)
        if tuned.config != index.config:
            tuned.write_config(release / RETRIEVAL_DIR / name / "index")
        out[f"{name}_recall@{k}"] = recall_vs_exact(tuned, embeddings, judge, top)
        tuning[name] = {"kind": index.kind, "steps": trail, "tuning_queries": len(tune), "judged_queries": len(judge)}
    write_summary(release, "indexes", {**out, "queries": len(chosen), "minimum": MIN_INDEX_RECALL, "tuning": tuning})
    low = {name: value for name, value in out.items() if value < MIN_INDEX_RECALL}
    if low:
        raise ReleaseCheckFailed(f"ScaNN recall below {MIN_INDEX_RECALL} even at the widest budget tried: {low} "
                                 f"(steps: {tuning})")
    print(f"[release] index recall vs exact: {out}", flush=True)
    return out


# ---- ranking ----------------------------------------------------------------------------------


def ranker_frame(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Typed copy of a ranking set: numeric features float32 (nullable ints/bools -> NaN), strings."""
    from models.ranking.shards import type_features

    return type_features(frame.copy(), numeric, categorical)


def ranker_config(default: Any, columns: Sequence[str], positioned: bool, span: str) -> Any:
    """``default`` (a :class:`models.ranking.config.RankerConfig`) cut to the features present in ``columns``,
    with position correction only when the set has served positions (``positioned``); :class:`DataError`
    when none is present (``span`` names the set)."""
    numeric = [n for n in default.numeric if n in columns]
    categorical = [n for n in default.categorical if n in columns]
    if not numeric and not categorical:
        raise DataError(f"{span} holds none of the ranker's features")
    return replace(default, numeric=numeric, categorical=categorical, log1p=[n for n in default.log1p if n in numeric],
                   position_correction=default.position_correction and positioned)


def train_ranker_into(
    release: Path, frame: pd.DataFrame, window: tuple[date, date], config: Any = None, verbose: bool = True,
    ranking_data: str | Mapping[str, Any] = "impressions", workers: int = 1,
) -> dict[str, Any]:
    """Train the DCN-v2 ranker on a ranking set held in pandas and write both exports into
    ``release/ranker``: the set is split (:func:`models.ranking.data.holdout_split`), written as shards and
    trained by :func:`train_ranker_from_shards`.

    A ranking set is one row per (request, candidate) with the ranker's features and the ``clicked``
    label: logged impressions with their served ``position`` -- the ranker trains with its position
    tower -- or, for a domain without an impression log, labelled candidates without a position (no
    ``position`` column, or an all-null one): the ranker trains without position correction.
    ``ranking_data`` says where the set came from (``"impressions"``, ``"bootstrap: later interactions
    vs retrieved candidates"``, ...; or a mapping of figures about it with its ``source``); it goes to
    ``summary/ranker.json`` (and so into the manifest) with the label counts. An empty set, a single
    label class or no usable feature raise :class:`DataError`.
    """
    from models.ranking.config import CLICK_LABEL, POSITION, RankerConfig
    from models.ranking.data import holdout_split
    from models.ranking.shards import write_frame_shards

    span = f"the ranking set of {window[0]}..{window[1]} ({_source(ranking_data)})"
    if frame.empty or CLICK_LABEL not in frame.columns:
        raise DataError(f"{span} is empty" if frame.empty else f"{span} has no {CLICK_LABEL!r} label")
    labels = pd.to_numeric(frame[CLICK_LABEL], errors="coerce")
    check_labels(span, int((labels == 1).sum()), int((labels == 0).sum()), len(frame))
    positioned = POSITION in frame.columns and bool(frame[POSITION].notna().any())
    config = ranker_config(config or RankerConfig(), list(frame.columns), positioned, span)
    try:
        train, valid = holdout_split(frame, RANKER_VALID_FRACTION, seed=config.seed)
    except ValueError as err:
        raise DataError(f"{span}: {err}") from err
    shards = write_frame_shards(train, valid, release / SHARDS_DIR, config.numeric, config.categorical,
                                config.position_correction, seed=config.seed, min_shards=workers)
    return train_ranker_from_shards(release, shards, window, config, verbose, ranking_data, workers)


def _source(ranking_data: str | Mapping[str, Any]) -> str:
    return ranking_data if isinstance(ranking_data, str) else str(ranking_data.get("source", "?"))


def check_labels(span: str, positives: int, negatives: int, rows: int) -> None:
    """A ranking set needs 0/1 labels of both classes (:class:`DataError` otherwise)."""
    if positives + negatives != rows or not positives or not negatives:
        raise DataError(f"{span} needs 0/1 labels of both classes: {positives:,} positive, {negatives:,} negative, "
                        f"{rows - positives - negatives:,} other")


def train_ranker_from_shards(
    release: Path, shards: Any, window: tuple[date, date], config: Any, verbose: bool = True,
    ranking_data: str | Mapping[str, Any] = "impressions", workers: int = 1,
) -> dict[str, Any]:
    """Train the ranker on a shard directory (:class:`models.ranking.shards.ShardSet`) in its own process(es)
    (:func:`models.ranking.trainer.launch_local`, ``workers`` of them), refuse it if its two exports
    disagree (the trainer compared them on validation rows), write ``summary/ranker.json`` and remove the
    shards. TensorFlow is imported by the trainer only."""
    from models.ranking.trainer import launch_local

    figures = shards.as_figures()
    print(f"[release] training the ranker on {figures['train_rows']:,} rows, validating on {figures['valid_rows']:,} "
          f"({_source(ranking_data)}; position correction: {config.position_correction}; {workers} worker(s))",
          flush=True)
    trained = launch_local(shards.directory, asdict(config), release / RANKER_DIR, workers,
                           tensorboard=release / LOGS_DIR / RANKER_DIR, verbose=verbose)
    parity = trained["parity"]
    if not parity["agree"]:
        raise ReleaseCheckFailed(f"ranker exports disagree: {parity}")
    recorded = ranking_data if isinstance(ranking_data, str) else dict(ranking_data)
    summary = {"window": [str(window[0]), str(window[1])], "ranking_data": recorded,
               "positives": figures["positives"], "negatives": figures["negatives"],
               "train_rows": figures["train_rows"], "valid_rows": figures["valid_rows"],
               "click_rate": figures["positives"] / figures["rows"], "position_correction": config.position_correction,
               "features": {"numeric": list(config.numeric), "categorical": list(config.categorical)},
               "structure": trained["config"]["structure"], "metrics": trained["metrics"],
               "comparison": trained["comparison"], "best_epoch": trained["best_epoch"], "workers": trained["workers"],
               "parity": parity}
    write_summary(release, RANKER_DIR, summary)
    shutil.rmtree(shards.directory, ignore_errors=True)
    return summary


# ---- finalize ---------------------------------------------------------------------------


def finalize_release(
    domain: str, version: str, window: tuple[date, date], metrics: Mapping[str, Any] | None = None,
    registry: ArtifactRegistry | None = None,
) -> Manifest:
    """Checksum the staged release into its manifest (training window, metrics, stage summaries)."""
    registry = registry or ArtifactRegistry()
    summaries = read_summaries(registry.staging_path(domain, version))
    merged = {**summaries.get("indexes", {}), **summaries.get("evaluation", {}), **(metrics or {})}
    merged = {k: v for k, v in merged.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return registry.finalize(domain, version, training_window=(str(window[0]), str(window[1])), metrics=merged,
                             extra={"summaries": summaries})


def check_release_indexes(domain: str, version: str, logical_date: date, paths: DataPaths | None = None,
                          registry: ArtifactRegistry | None = None) -> dict[str, float]:
    """:func:`check_indexes` of a (staged) release with the histories of a sample of the lake's users up
    to ``logical_date`` (:func:`models.evaluation.lake_samples.index_check_histories`)."""
    end = pd.Timestamp(logical_date, tz="UTC") + pd.Timedelta(days=1)
    return check_indexes(release_dir(domain, version, registry),
                         index_check_histories(paths or DataPaths.default(), domain, end))
