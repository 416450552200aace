"""The ranker's inputs as of one moment, rebuilt offline: what serving would have handed a release's ranker
for a batch of (user, candidate) pairs at that moment. Used to evaluate the ranked order on held-out days.

Sources, in the order serving resolves a feature name (:func:`serving.features.ranker_batch`):

- item features (``item_features``, ``item_stats``) and user features (``user_profile``,
  ``user_activity``) from the Feast offline sources the features job writes
  (``DataPaths.feature_source(view)``: one row per entity per snapshot day, ``event_timestamp`` = the
  snapshot's cutoff): each entity's latest row at or before the moment. A missing entity gets the
  online store's defaults and a null value what the online reader returns for it
  (:func:`common.online_features.default_value` / ``null_value``), as serving would see them;
- cross features (:func:`common.cross_features.cross_features`) from the user's ``user_history`` row
  of that source, or -- for a user without one (no features run covers the moment yet) -- from a row
  built from the lake's interactions before the moment (:func:`models.ranking.candidate_ranker.history_rows`);
- the request context (:func:`common.request_context.request_context`) of a request at the moment,
  from the device the user last used before it (:func:`last_devices`; ``other`` if unknown -- a token
  the ranker may never have seen, whose embedding is then untrained).

Everything is column-wise: the only Python loop is one :func:`cross_features` call per user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from common.cross_features import cross_features
from common.features import (
    CREATED,
    EVENT_TIMESTAMP,
    ITEM_FEATURES,
    ITEM_STATS,
    USER_ACTIVITY,
    USER_HISTORY,
    USER_PROFILE,
    FeatureViewSpec,
)
from common.paths import DataPaths
from common.request_context import request_context

ITEM_VIEWS = (ITEM_FEATURES, ITEM_STATS)
USER_VIEWS = (USER_PROFILE, USER_ACTIVITY)


def _distinct(ids: Sequence[str]) -> list[str]:
    return [str(i) for i in dict.fromkeys(ids)]


def latest_rows(paths: DataPaths, spec: FeatureViewSpec, ids: Sequence[str], as_of: pd.Timestamp) -> pd.DataFrame:
    """Each of ``ids``' latest row of ``spec``'s offline source at or before ``as_of`` (ties: the latest
    ``created``), indexed by the entity key; entities without such a row are absent. Columns: the view's
    fields present in the source."""
    source = paths.feature_source(spec.name)
    empty = pd.DataFrame(columns=spec.names, index=pd.Index([], name=spec.entity, dtype=object))
    if not source.is_dir():
        return empty
    dataset = ds.dataset(source, format="parquet")
    names = set(dataset.schema.names)
    if not {spec.entity, EVENT_TIMESTAMP} <= names:
        return empty
    keys = [c for c in (spec.entity, EVENT_TIMESTAMP, CREATED) if c in names]
    table = dataset.to_table(columns=[*keys, *(n for n in spec.names if n in names)],
                             filter=ds.field(spec.entity).isin(_distinct(ids)))
    frame = table.to_pandas()
    frame = frame[pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True) <= as_of]
    frame = frame.sort_values(keys[1:], kind="stable").drop_duplicates(spec.entity, keep="last")
    return frame.set_index(spec.entity).drop(columns=keys[1:])


def served_columns(spec: FeatureViewSpec, rows: pd.DataFrame, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The scalar fields of ``spec`` for ``ids`` (one value each, in order) as the online reader returns
    them: an entity without a row gets :func:`default_value`, a null in a row :func:`null_value`."""
    from common.online_features import default_value, null_value  # imports Feast: only when evaluating

    found = pd.Index(rows.index).get_indexer(pd.Index(ids)) >= 0
    aligned = rows.reindex(pd.Index(ids))
    out: dict[str, np.ndarray] = {}
    for field in spec.fields:
        if field.dtype.startswith("Array("):
            continue
        column = aligned[field.name] if field.name in aligned.columns else pd.Series(np.nan, index=aligned.index)
        missing = column.isna().to_numpy()
        values = column.to_numpy(dtype=object)
        values[missing & found] = null_value(spec, field)
        values[missing & ~found] = default_value(spec, field)
        out[field.name] = values
    return out


def history_of(paths: DataPaths, users: Sequence[str], as_of: pd.Timestamp,
               fallback: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every user's ``user_history`` row as of ``as_of``: the offline source's, else ``fallback``'s."""
    rows = latest_rows(paths, USER_HISTORY, users, as_of)
    offline = {str(user): {name: row.get(name) for name in USER_HISTORY.names} for user, row in
               zip(rows.index, rows.to_dict("records"), strict=True)}
    return {**{u: fallback[u] for u in users if u in fallback}, **offline}


def last_devices(paths: DataPaths, domain: str, users: Sequence[str], as_of: pd.Timestamp) -> dict[str, str]:
    """The device of each user's last event in the lake before ``as_of`` (users without one are absent)."""
    from common.lake import read_events

    until = (as_of.date() + pd.Timedelta(days=1)).isoformat()
    events = read_events(paths, domain, ["user_id", "device", "timestamp"], until=until, users=users)
    events = events[events["device"].notna()
                    & (pd.to_datetime(events["timestamp"], utc=True) < as_of)]
    latest = events.sort_values("timestamp", kind="stable").drop_duplicates("user_id", keep="last")
    return dict(zip(latest["user_id"].astype(str), latest["device"].astype(str), strict=True))


def ranking_inputs(
    pairs: pd.DataFrame, features: Sequence[str], categories: pd.Series, histories: dict[str, dict[str, Any]],
    paths: DataPaths, as_of: pd.Timestamp, devices: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """``pairs`` (``user_id``, ``item_id``) with one column per name of ``features``, as of ``as_of``;
    ``categories`` maps item ids to their taxonomy path (the cross features' category), ``devices``
    users to the device of their request. Returns the frame and the features no source provides (left
    null)."""
    users = pairs["user_id"].astype(str).to_numpy()
    items = pairs["item_id"].astype(str).to_numpy()
    now = float(as_of.timestamp())
    unique_users, unique_items = pd.unique(users), pd.unique(items)
    item_columns: dict[str, np.ndarray] = {}
    for spec in ITEM_VIEWS:
        item_columns.update(served_columns(spec, latest_rows(paths, spec, unique_items, as_of), unique_items))
    user_columns: dict[str, np.ndarray] = {}
    for spec in USER_VIEWS:
        user_columns.update(served_columns(spec, latest_rows(paths, spec, unique_users, as_of), unique_users))
    item_at = pd.Index(unique_items).get_indexer(items)
    user_at = pd.Index(unique_users).get_indexer(users)
    item_categories = categories.reindex(unique_items).fillna("").astype(str).to_numpy()[item_at]
    crosses: dict[str, np.ndarray] = {}
    for user, rows in pd.Series(np.arange(len(users))).groupby(users, sort=False).indices.items():
        for name, values in cross_features(histories.get(user), items[rows], item_categories[rows], now).items():
            crosses.setdefault(name, np.zeros(len(users), np.float32))[rows] = values
    context = request_context(np.full(len(unique_users), now), [(devices or {}).get(u) for u in unique_users])
    out = pairs[["user_id", "item_id"]].reset_index(drop=True)
    missing = []
    for name in features:  # serving's precedence: item, cross, context, user
        if name in item_columns:
            out[name] = item_columns[name][item_at]
        elif name in crosses:
            out[name] = crosses[name]
        elif name in context:
            out[name] = context[name][user_at]
        elif name in user_columns:
            out[name] = user_columns[name][user_at]
        else:
            out[name] = None
            missing.append(name)
    return out, missing
