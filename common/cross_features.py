"""User x item and user x category cross features for a batch of ranking candidates.

The ranker scores up to ~500 candidates per request. Serving reads the user's compact history once
(the ``user_history`` feature view) and matches it against every candidate here, vectorised with
numpy; the Spark training-set job calls the same function, so training and serving cannot drift.

``history`` is one ``user_history`` row (a mapping of the view's field names to sequences; missing
or ``None`` means "no history"), ``item_ids``/``categories`` describe the candidates (category = the
full taxonomy path of ``item_features.category``), ``now`` is the request time in epoch seconds
(a scalar, or one value per candidate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from common.features import NO_TIME_DAYS, USER_HISTORY, FeatureField

NO_TIME_HOURS = NO_TIME_DAYS * 24.0

(HIST_ITEM_IDS, HIST_ITEM_LAST_TS, HIST_ITEM_VIEWS, HIST_ITEM_PURCHASES, HIST_ITEM_DECLINES,
 CAT_KEYS, CAT_VIEWS, CAT_PURCHASES, CAT_LAST_TS) = USER_HISTORY.names

CROSS_FEATURES: tuple[FeatureField, ...] = (
    FeatureField("x_item_interacted", "Float32", "1 if the user interacted with the candidate before, else 0"),
    FeatureField("x_item_views", "Float32", "the user's views+clicks of the candidate"),
    FeatureField("x_item_purchases", "Float32", "the user's purchases/approvals of the candidate"),
    FeatureField("x_item_declined", "Float32", "1 if the user declined the candidate before, else 0"),
    FeatureField(
        "x_item_hours_since", "Float32",
        f"hours since the user's last interaction with the candidate ({NO_TIME_HOURS:.0f} if never)",
    ),
    FeatureField("x_cat_views", "Float32", "the user's views+clicks in the candidate's category"),
    FeatureField("x_cat_purchases", "Float32", "the user's purchases/approvals in the candidate's category"),
    FeatureField("x_cat_conversion", "Float32", "category purchases / (category views + 1)"),
    FeatureField("x_cat_view_share", "Float32", "share of all the user's views+clicks that fall in the category"),
    FeatureField(
        "x_cat_hours_since", "Float32",
        f"hours since the user's last interaction in the candidate's category ({NO_TIME_HOURS:.0f} if never)",
    ),
)
CROSS_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in CROSS_FEATURES)


def _values(history: Mapping[str, Any], name: str) -> np.ndarray:
    value = history.get(name)
    return np.asarray([] if value is None else value, dtype=np.float64)


def _positions(keys: Any, wanted: Sequence[Any]) -> np.ndarray:
    """Index of every wanted key in ``keys``; -1 where absent (or ``keys`` is empty/None)."""
    index = {key: i for i, key in enumerate([] if keys is None else keys)}
    return np.fromiter((index.get(w, -1) for w in wanted), dtype=np.int64, count=len(wanted))


def _gather(values: np.ndarray, positions: np.ndarray, default: float) -> np.ndarray:
    """``values[positions]`` with ``default`` wherever the position is -1 (the appended slot)."""
    return np.append(values, default)[positions]


def _hours_since(last_ts: np.ndarray, positions: np.ndarray, now: np.ndarray) -> np.ndarray:
    hours = np.clip((now - _gather(last_ts, positions, 0.0)) / 3600.0, 0.0, NO_TIME_HOURS)
    return np.where(positions >= 0, hours, NO_TIME_HOURS)


def cross_features(
    history: Mapping[str, Any] | None,
    item_ids: Sequence[str],
    categories: Sequence[str | None],
    now: npt.ArrayLike,
) -> dict[str, np.ndarray]:
    """The :data:`CROSS_FEATURES` of every candidate: float32 arrays of ``len(item_ids)``, by name."""
    history = history or {}
    now_s = np.asarray(now, dtype=np.float64)
    item_pos = _positions(history.get(HIST_ITEM_IDS), item_ids)
    cat_pos = _positions(history.get(CAT_KEYS), categories)

    cat_views_all = _values(history, CAT_VIEWS)
    total_views = float(cat_views_all.sum())
    cat_views = _gather(cat_views_all, cat_pos, 0.0)
    cat_purchases = _gather(_values(history, CAT_PURCHASES), cat_pos, 0.0)
    features = {
        "x_item_interacted": (item_pos >= 0).astype(np.float64),
        "x_item_views": _gather(_values(history, HIST_ITEM_VIEWS), item_pos, 0.0),
        "x_item_purchases": _gather(_values(history, HIST_ITEM_PURCHASES), item_pos, 0.0),
        "x_item_declined": (_gather(_values(history, HIST_ITEM_DECLINES), item_pos, 0.0) > 0).astype(np.float64),
        "x_item_hours_since": _hours_since(_values(history, HIST_ITEM_LAST_TS), item_pos, now_s),
        "x_cat_views": cat_views,
        "x_cat_purchases": cat_purchases,
        "x_cat_conversion": cat_purchases / (cat_views + 1.0),
        "x_cat_view_share": cat_views / total_views if total_views > 0 else np.zeros(len(cat_pos)),
        "x_cat_hours_since": _hours_since(_values(history, CAT_LAST_TS), cat_pos, now_s),
    }
    return {name: features[name].astype(np.float32) for name in CROSS_FEATURE_NAMES}


def with_recent_activity(history: Mapping[str, Any] | None, activity: Mapping[str, Any]) -> dict[str, Any]:
    """A ``user_history`` row with the real-time ``user_activity`` row folded in.

    The history is nightly; the activity is kept fresh by the streaming job. Counts merge as lower
    bounds, so an interaction present in both is never counted twice: a recent category's views are at
    least its number of recent items, a recent item's views at least 1. Items and categories new to
    the history are added with the activity's ``last_event_ts`` as their last interaction time.
    """
    row = {name: list((history or {}).get(name) or []) for name in USER_HISTORY.names}
    last_ts = int(activity.get("last_event_ts") or 0)
    item_at = {item: i for i, item in enumerate(row[HIST_ITEM_IDS])}
    for item in activity.get("recent_item_ids") or []:
        if item in item_at:
            row[HIST_ITEM_VIEWS][item_at[item]] = max(row[HIST_ITEM_VIEWS][item_at[item]], 1)
            continue
        item_at[item] = len(row[HIST_ITEM_IDS])
        for name, value in ((HIST_ITEM_IDS, item), (HIST_ITEM_LAST_TS, last_ts), (HIST_ITEM_VIEWS, 1),
                            (HIST_ITEM_PURCHASES, 0), (HIST_ITEM_DECLINES, 0)):
            row[name].append(value)
    cat_at = {key: i for i, key in enumerate(row[CAT_KEYS])}
    for key, count in zip(activity.get("recent_category_keys") or [], activity.get("recent_category_counts") or [],
                          strict=False):
        if key in cat_at:
            row[CAT_VIEWS][cat_at[key]] = max(row[CAT_VIEWS][cat_at[key]], int(count))
            continue
        cat_at[key] = len(row[CAT_KEYS])
        for name, value in ((CAT_KEYS, key), (CAT_VIEWS, int(count)), (CAT_PURCHASES, 0), (CAT_LAST_TS, last_ts)):
            row[name].append(value)
    return row
