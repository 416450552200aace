"""The bootstrap ranking set: ranker examples for a domain without an impression log.

A business migrating from a legacy recommender often has purchases and views but no impressions, so
there is no clicked / not-clicked slate to learn from. Instead every user teaches with their own
later interactions (no global time cut: a cut at one instant leaves only the few users active on both
sides of it):

- **split**: each user's distinct items of the window, ordered by their first positive interaction;
  the last :data:`LATER_FRACTION` of them (at least one, with at least one before) are the
  positives (``clicked = 1``; ``converted = 1`` when the user had the domain's conversion event on
  the item). The request time ``t`` of the user's example group is the first interaction of the
  first later item; the user's history is everything before (ties at ``t`` included). An item already
  in the history is never a positive again: the retrievers leave seen items out of the candidates
  the ranker scores (MovieLens even logs every liked rating as a view *and* a purchase at once).
  A user with a single distinct item contributes nothing.
- **negatives**: the candidates the staged release's own retrievers return for the user at ``t``
  (their history before ``t``; :func:`models.retrieval.candidates.retrieve`), minus every item the user
  interacted with in the window, sampled to :data:`RETRIEVED_PER_POSITIVE` per positive, plus
  :data:`RANDOM_PER_POSITIVE` random catalog items per positive (seeded).
- **features**: the examples (``request_id, domain, user_id, item_id, event_timestamp = t, device =
  null, clicked, converted``; no ``position``) go through the point-in-time join of the ranking
  training set (:func:`spark_jobs.training_sets.ranking_set`), so they carry exactly the features the
  served ranker reads, as of ``t`` (null where the views hold nothing that recent).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from common.errors import DataError
from common.features import EVENT_TIMESTAMP
from common.paths import DataPaths

if TYPE_CHECKING:
    from models.retrieval.export import Retrievers

LATER_FRACTION = 0.2  # share of a user's distinct items that become positives (at least 1, at least 1 before)
RETRIEVED_PER_POSITIVE = 4  # negatives from the retrievers' candidates per positive
RANDOM_PER_POSITIVE = 1  # random catalog negatives per positive
CANDIDATES = 100  # each retriever's top-k the retrieved negatives are drawn from
SEED = 0
PAIR = ["user_id", "item_id"]
JOB = "train-ranker"


@dataclass(frozen=True)
class UserSplit:
    """``positives``: ``user_id, item_id, event_timestamp`` (the user's request time), ``converted``;
    ``history``: the interactions before each user's request time (only users with positives);
    ``interacted``: every distinct (user, item) pair of the window."""

    positives: pd.DataFrame
    history: pd.DataFrame
    interacted: pd.DataFrame

    @property
    def request_times(self) -> pd.Series:
        """user_id -> request time."""
        return self.positives.groupby("user_id")[EVENT_TIMESTAMP].first()


def later_counts(items: np.ndarray, fraction: float = LATER_FRACTION) -> np.ndarray:
    """How many of ``items`` distinct items become positives: ``round(fraction * n)`` clipped to
    ``1..n-1`` (0 for users with fewer than two items)."""
    items = np.asarray(items, dtype=np.int64)
    return np.where(items >= 2, np.clip(np.round(fraction * items), 1, np.maximum(items - 1, 1)), 0).astype(np.int64)


def split_users(interactions: pd.DataFrame, conversion_event: str | None,
                later_fraction: float = LATER_FRACTION) -> UserSplit:
    """Split every user's interactions (``user_id, item_id, timestamp, event_type``) by time (see the
    module docstring); vectorised over users."""
    frame = interactions[["user_id", "item_id", "timestamp", "event_type"]]
    firsts = (frame.groupby(PAIR, as_index=False, sort=False)["timestamp"].min()
              .sort_values(["user_id", "timestamp", "item_id"], kind="stable", ignore_index=True))
    by_user = firsts.groupby("user_id", sort=False)
    size = by_user["item_id"].transform("size").to_numpy()
    rank = by_user.cumcount().to_numpy()
    later = rank >= size - later_counts(size, later_fraction)
    positives = firsts[later & (size >= 2)].rename(columns={"timestamp": "_first"})
    request_time = positives.groupby("user_id")["_first"].transform("min")
    positives = positives.assign(**{EVENT_TIMESTAMP: request_time}).drop(columns="_first")
    converted = frame.loc[frame["event_type"] == conversion_event, PAIR].drop_duplicates()
    flagged = positives.merge(converted.assign(converted=1), on=PAIR, how="left")
    positives = flagged.assign(converted=flagged["converted"].fillna(0).astype("int64")).reset_index(drop=True)

    times = positives.groupby("user_id")[EVENT_TIMESTAMP].first().rename("_t")
    timed = frame.merge(times, left_on="user_id", right_index=True)
    is_positive = timed.merge(positives[PAIR].assign(_pos=True), on=PAIR, how="left")["_pos"].notna().to_numpy()
    history = timed.loc[(timed["timestamp"] <= timed["_t"]).to_numpy() & ~is_positive].drop(columns="_t")
    return UserSplit(positives, history.reset_index(drop=True), firsts[PAIR])


def candidate_pairs(user_ids: np.ndarray, ids: Mapping[str, np.ndarray], found: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The distinct (user, item) pairs every retriever found itself (its padding left out), from the
    ``(n_users, k)`` id arrays of a :class:`models.retrieval.candidates.CandidateSet`."""
    users, items = [], []
    for name, block in ids.items():
        own = np.arange(block.shape[1])[None, :] < np.asarray(found[name])[:, None]
        users.append(np.broadcast_to(np.asarray(user_ids, dtype=object)[:, None], block.shape)[own])
        items.append(block[own])
    pairs = pd.DataFrame({"user_id": np.concatenate(users) if users else [],
                          "item_id": np.concatenate(items) if items else []})
    return pairs.drop_duplicates(ignore_index=True)


def random_pairs(wanted: pd.Series, catalog: Sequence[str], seed: int = SEED) -> pd.DataFrame:
    """For each user (index of ``wanted``) ``2 * wanted + 4`` random catalog items (with repeats): a
    pool to sample random negatives from once the user's own items are removed."""
    draws = 2 * wanted.to_numpy(dtype=np.int64) + 4
    rng = np.random.default_rng(seed)
    chosen = np.asarray(catalog, dtype=object)[rng.integers(len(catalog), size=int(draws.sum()))]
    return pd.DataFrame({"user_id": np.repeat(wanted.index.to_numpy(dtype=object), draws), "item_id": chosen})


def sample_negatives(pool: pd.DataFrame, exclude: pd.DataFrame, wanted: pd.Series, seed: int = SEED) -> pd.DataFrame:
    """Up to ``wanted[user]`` distinct items per user drawn (seeded) from the ``pool`` pairs, never a
    pair of ``exclude`` (the items the user interacted with) nor a user outside ``wanted``."""
    pool = pool[PAIR].drop_duplicates()
    pool = pool[pool["user_id"].isin(wanted.index)]
    marked = pool.merge(exclude[PAIR].drop_duplicates().assign(_seen=True), on=PAIR, how="left")
    pool = marked.loc[marked["_seen"].isna(), PAIR].sort_values(PAIR, ignore_index=True)
    keyed = pool.assign(_key=np.random.default_rng(seed).random(len(pool))).sort_values(["user_id", "_key"])
    keep = keyed.groupby("user_id", sort=False).cumcount().to_numpy() < keyed["user_id"].map(wanted).to_numpy()
    return keyed.loc[keep, PAIR].reset_index(drop=True)


def labelled_examples(domain: str, positives: pd.DataFrame, negatives: pd.DataFrame) -> pd.DataFrame:
    """One request per user at its request time: positives and negatives with their labels, the
    columns of an impression example without ``position`` (``device`` unknown)."""
    times = positives.groupby("user_id")[EVENT_TIMESTAMP].first()
    rows = pd.concat([
        positives[[*PAIR, "converted"]].assign(clicked=1),
        negatives[PAIR].assign(clicked=0, converted=0),
    ], ignore_index=True)
    rows = rows.assign(request_id="bootstrap-" + rows["user_id"].astype(str), domain=domain,
                       **{EVENT_TIMESTAMP: rows["user_id"].map(times)}, device=None)
    return rows[["request_id", "domain", *PAIR, EVENT_TIMESTAMP, "device", "clicked", "converted"]].astype(
        {"clicked": "int64", "converted": "int64"})


def retrieved_pool(retrievers: Retrievers, split: UserSplit, users: pd.DataFrame | None,
                   candidates: int = CANDIDATES) -> pd.DataFrame:
    """The pairs a release's retrievers propose to every user with positives at its request time
    (history before it, profile and popularity segment from ``users``; every item of the user's
    window left out)."""
    from models.release import profile_columns, segment_column
    from models.retrieval.candidates import evaluation_histories, retrieve

    user_ids = split.request_times.index.tolist()
    histories, _ = evaluation_histories(split.history, user_ids)
    wanted = set(user_ids)
    seen = {str(u): set(items) for u, items in split.interacted.groupby("user_id")["item_id"] if u in wanted}
    k = min(candidates, len(retrievers.content_index) - max(map(len, seen.values()), default=0))
    if k < 1:
        return pd.DataFrame(columns=PAIR)
    profiles, segments = None, None
    if users is not None and not users.empty:
        known = users.drop_duplicates("user_id").set_index("user_id")
        known = known[known.index.isin(wanted)]
        profiles = known[profile_columns(users)].to_dict("index")
        column = segment_column(users)
        if column is not None:
            segments = known[column].dropna().astype(str).to_dict()
    found = retrieve(retrievers, user_ids, histories, seen, k, profiles, segments)
    return candidate_pairs(found.user_ids, found.ids, found.found)


@dataclass(frozen=True)
class BootstrapSet:
    frame: pd.DataFrame  # the ranking set (one row per example, the ranker's columns)
    summary: dict[str, Any]  # users, positives, negatives, ... (what summary/ranker.json records)


def bootstrap_ranking_set(
    spark: Any, paths: DataPaths, domain: str, first: date, last: date, retrieval_dir: Path,
    columns: Sequence[str], seed: int = SEED,
) -> BootstrapSet:
    """The bootstrap ranking set of ``domain`` for the window ``first..last`` (see the module
    docstring), collected to the driver with the ``columns`` present. Raises :class:`DataError`
    when no user has two items or no negative can be drawn."""
    from common.domains import domain as domain_config
    from common.lake import read_users
    from models.retrieval.export import load_retrievers
    from spark_jobs.jobs import step
    from spark_jobs.train_retrieval import read_interactions, to_pandas_utc

    started = time.perf_counter()
    with step(JOB, f"{domain} bootstrap split {first}..{last}") as out:
        interactions = read_interactions(spark, paths, domain, first, last)
        split = split_users(interactions, domain_config(domain).conversion_event)
        out.update(interactions=len(interactions), users=interactions["user_id"].nunique(),
                   users_with_positives=split.positives["user_id"].nunique(), positives=len(split.positives))
    if split.positives.empty:
        raise DataError(f"no {domain} user has two distinct items in {first}..{last}: "
                        "nothing to bootstrap a ranking set from")
    wanted = split.positives.groupby("user_id").size()
    with step(JOB, f"{domain} bootstrap negatives") as out:
        retrievers = load_retrievers(retrieval_dir)
        users = read_users(paths, domain) if paths.users(domain).exists() else None
        retrieved = sample_negatives(retrieved_pool(retrievers, split, users), split.interacted,
                                     wanted * RETRIEVED_PER_POSITIVE, seed)
        catalog = retrievers.content_index.ids.tolist()
        random = sample_negatives(random_pairs(wanted * RANDOM_PER_POSITIVE, catalog, seed + 1),
                                  pd.concat([split.interacted, retrieved], ignore_index=True),
                                  wanted * RANDOM_PER_POSITIVE, seed + 2)
        out.update(retrieved=len(retrieved), random=len(random))
    if retrieved.empty and random.empty:
        raise DataError(f"no negative for the {domain} bootstrap ranking set: its users interacted with "
                        f"every item of the catalog ({len(catalog)} items)")
    examples = labelled_examples(domain, split.positives, pd.concat([retrieved, random], ignore_index=True))
    with step(JOB, f"{domain} bootstrap features") as out:
        joined = _with_features(spark, paths, domain, first, last, examples)
        frame = to_pandas_utc(joined.select(*[c for c in columns if c in joined.columns]), EVENT_TIMESTAMP)
        out.update(rows=len(frame))
    summary = {"source": "bootstrap", "users": int(wanted.size), "positives": len(split.positives),
               "converted": int(split.positives["converted"].sum()), "retrieved_negatives": len(retrieved),
               "random_negatives": len(random), "later_fraction": LATER_FRACTION,
               "retrieved_per_positive": RETRIEVED_PER_POSITIVE, "random_per_positive": RANDOM_PER_POSITIVE,
               "candidates": CANDIDATES, "seed": seed, "seconds": round(time.perf_counter() - started, 1)}
    print(f"[{JOB}] {domain} bootstrap ranking set: {summary['users']} users, {summary['positives']} positives, "
          f"{len(retrieved) + len(random)} negatives ({summary['seconds']} s)", flush=True)
    return BootstrapSet(frame, summary)


def _with_features(spark: Any, paths: DataPaths, domain: str, first: date, last: date, examples: pd.DataFrame) -> Any:
    """The examples with the ranking features as of their request time (the ranking set's own join)."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    from spark_jobs.lake_io import read_view
    from spark_jobs.training_sets import RANKING_VIEWS, domain_views, ranking_set

    schema = StructType([
        *(StructField(c, StringType()) for c in ("request_id", "domain", "user_id", "item_id")),
        StructField(EVENT_TIMESTAMP, TimestampType()), StructField("device", StringType()),
        StructField("clicked", LongType()), StructField("converted", LongType()),
    ])
    rows = examples.assign(**{EVENT_TIMESTAMP: pd.to_datetime(examples[EVENT_TIMESTAMP], utc=True)})
    frame = spark.createDataFrame(rows, schema)
    views = domain_views({spec: read_view(spark, paths, spec) for spec in RANKING_VIEWS}, domain, first, last)
    return ranking_set(frame, views)
