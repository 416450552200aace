"""What a release's checks read of the lake: samples of users, with the filters pushed down.

A release is checked and evaluated on samples of users (:mod:`models.release`). These functions read only
the partitions and the users they need (the filters go to the Parquet scan), so memory follows the
sample, not the lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from common.paths import DataPaths

EVAL_USERS = 5_000  # held-out users a release is evaluated on (a seeded sample of them when there are more)
INDEX_CHECK_USERS = 500  # users whose queries the index check searches
INDEX_CHECK_LOOKBACK_DAYS = 28  # the index check's users: those active in these days before the release's day


def _day(value: pd.Timestamp | date, days: int = 0) -> str:
    return (pd.Timestamp(value).date() + timedelta(days=days)).isoformat()


def _sample(names: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(names) <= size:
        return names
    return np.sort(np.random.default_rng(seed).choice(names, size, replace=False))


def lake_interactions(
    paths: DataPaths, domain: str, since: pd.Timestamp | date | None = None, until: pd.Timestamp | date | None = None,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The domain's positive interactions from the lake (weights of ``positive_events``): only the
    partitions of the days ``since``..``until`` (both included; open when None) and only ``users``' rows
    (all when None)."""
    from common.lake import read_events
    from models.retrieval.data import implicit_interactions

    events = read_events(paths, domain, ["user_id", "item_id", "event_type", "timestamp"],
                         event_types=list(domain_config(domain).positive_events),
                         since=None if since is None else _day(since), until=None if until is None else _day(until, 1),
                         users=users)
    interactions = implicit_interactions(events, domain)
    interactions["timestamp"] = pd.to_datetime(interactions["timestamp"], utc=True)
    return interactions.assign(domain=domain)


def evaluation_interactions(
    paths: DataPaths, domain: str, holdout_start: pd.Timestamp, holdout_end: pd.Timestamp,
    users: int = EVAL_USERS, seed: int = 0,
) -> pd.DataFrame:
    """What :func:`models.evaluation.release_evaluation.evaluate_release` needs of the lake for the holdout ``[holdout_start, holdout_end]``:
    every interaction, up to the holdout's end, of a seeded sample of at most ``users`` of the users with
    a positive interaction in the holdout. The frame's ``attrs["held_out_users"]`` is how many there were.
    The evaluation's popularity base (novelty, serendipity's expected lists) is then these users' history."""
    held = lake_interactions(paths, domain, holdout_start, holdout_end)
    times = held["timestamp"]
    names = np.unique(held.loc[(times >= holdout_start) & (times <= holdout_end), "user_id"].astype(str).to_numpy())
    chosen = _sample(names, users, seed)
    out = lake_interactions(paths, domain, until=holdout_end, users=chosen.tolist()) if len(chosen) else held.iloc[:0]
    out.attrs["held_out_users"] = len(names)
    return out


def index_check_histories(
    paths: DataPaths, domain: str, end: pd.Timestamp, users: int = INDEX_CHECK_USERS,
    lookback_days: int = INDEX_CHECK_LOOKBACK_DAYS, seed: int = 0,
) -> dict[str, list[str]]:
    """Recent items (newest first) before ``end`` of a seeded sample of at most ``users`` of the users with
    a positive interaction in the ``lookback_days`` days before ``end``: the queries of the index check."""
    from models.retrieval.data import latest_histories

    last = end - pd.Timedelta(microseconds=1)
    recent = lake_interactions(paths, domain, end - pd.Timedelta(days=lookback_days), last)
    names = np.unique(recent.loc[recent["timestamp"] < end, "user_id"].astype(str).to_numpy())
    chosen = _sample(names, users, seed)
    if not len(chosen):
        return {}
    mine = lake_interactions(paths, domain, until=last, users=chosen.tolist())
    return latest_histories(mine[mine["timestamp"] < end])

