"""Temporal split, cold-start slices and ground truth on hand-built frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.split import (
    build_ground_truth,
    items_launched_between,
    split_by_time_fraction,
    temporal_split,
    users_with_few_events,
)

DAY0 = pd.Timestamp("2024-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=n)


def frame(rows: list[tuple[str, str, float, str, float]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type", "weight"])
    out["timestamp"] = out["timestamp"].map(day)
    return out


def test_split_boundaries_on_a_hand_built_frame() -> None:
    interactions = frame([(f"u{i % 3}", f"i{i}", float(i), "view", 1.0) for i in range(11)])  # days 0..10
    split = temporal_split(interactions, test_start=day(8), validation_start=day(6))
    assert sorted(split.train["item_id"]) == sorted(f"i{i}" for i in range(8))
    assert sorted(split.test["item_id"]) == ["i10", "i8", "i9"]  # [t1, t2] includes both ends
    assert sorted(split.validation["item_id"]) == ["i6", "i7"]
    assert sorted(split.fit["item_id"]) == [f"i{i}" for i in range(6)]
    with pytest.raises(ValueError):
        temporal_split(interactions, test_start=day(6), validation_start=day(8))


def test_split_by_time_fraction_cuts_the_span() -> None:
    interactions = frame([("u1", f"i{i}", float(i), "view", 1.0) for i in range(101)])  # days 0..100
    split = split_by_time_fraction(interactions, test_fraction=0.2, validation_fraction=0.1)
    assert split.test_start == day(80)
    assert split.validation_start == day(70)
    assert split.test_end == day(100)
    assert len(split.test) == 21 and len(split.validation) == 10 and len(split.fit) == 70


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=20, max_size=80, unique=True))
def test_no_test_period_interaction_leaks_into_training(days: list[float]) -> None:
    interactions = frame([(f"u{i % 4}", f"i{i}", d, "view", 1.0) for i, d in enumerate(days)])
    try:
        split = split_by_time_fraction(interactions, 0.25, 0.25)
    except ValueError:  # a random draw may leave a window empty: that is refused, never silently leaked
        return
    assert split.train["timestamp"].max() < split.test_start <= split.test["timestamp"].min()
    assert set(split.train["item_id"]).isdisjoint(split.test["item_id"])
    assert len(split.train) + len(split.test) == len(interactions)
    # validation lies inside training, after the fit part and before the test period
    assert split.validation["timestamp"].min() >= split.validation_start
    assert split.validation["timestamp"].max() < split.test_start
    assert split.fit["timestamp"].max() < split.validation_start
    assert set(split.validation["item_id"]) <= set(split.train["item_id"])
    assert len(split.fit) + len(split.validation) == len(split.train)


def test_cold_start_users_and_items() -> None:
    train = frame([("u1", "a", 0, "view", 1.0), ("u1", "b", 1, "view", 1.0), ("u1", "c", 2, "view", 1.0),
                   ("u2", "a", 0, "view", 1.0), ("u2", "a", 1, "purchase", 4.0)])
    # u1: 3 events (warm), u2: 2 events (cold), u3: none (cold)
    assert users_with_few_events(train, np.array(["u1", "u2", "u3"]), max_events=2).tolist() == [False, True, True]
    catalog = pd.DataFrame({"item_id": ["a", "b", "c", "d"],
                            "launched_at": [day(-30), day(5), day(10), day(11)]})
    assert items_launched_between(catalog, day(5), day(10)).tolist() == ["b", "c"]


def test_ground_truth_positives_grades_and_seen_exclusion() -> None:
    catalog = pd.DataFrame({"item_id": ["a", "b", "c", "d"]})
    train = frame([("u1", "c", 0, "view", 1.0)])
    test = frame([
        ("u1", "a", 10, "view", 1.0), ("u1", "a", 10, "purchase", 4.0),  # relevant, grade 5
        ("u1", "b", 11, "view", 1.0),  # not relevant (no purchase), grade 1
        ("u1", "c", 12, "purchase", 4.0),  # relevant but already seen in training
        ("u2", "d", 12, "view", 1.0),  # u2 has no relevant item: not evaluated
    ])
    truth = build_ground_truth(test, train, catalog, positive_events=("purchase",))
    assert truth.user_ids.tolist() == ["u1"]
    assert truth.relevance.toarray().tolist() == [[1, 0, 0, 0]]
    assert truth.grades.toarray().tolist() == [[5, 1, 0, 0]]
    kept = build_ground_truth(test, train, catalog, positive_events=("purchase",), exclude_seen=False)
    assert kept.relevance.toarray().tolist() == [[1, 0, 1, 0]]
    assert kept.grades.toarray().tolist() == [[5, 1, 4, 0]]
    everything = build_ground_truth(test, train, catalog, positive_events=("view", "purchase"))
    assert everything.user_ids.tolist() == ["u1", "u2"]
    assert everything.n_relevant.tolist() == [2, 1]


def test_ground_truth_restrict_to_items_drops_users_without_relevant_items() -> None:
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"]})
    test = frame([("u1", "a", 1, "purchase", 4.0), ("u1", "c", 1, "purchase", 4.0), ("u2", "b", 1, "purchase", 4.0)])
    truth = build_ground_truth(test, frame([]), catalog, positive_events=("purchase",))
    only_c, rows = truth.restrict(items=np.array([False, False, True]))
    assert only_c.user_ids.tolist() == ["u1"] and rows.tolist() == [0]
    assert only_c.relevance.toarray().tolist() == [[0, 0, 1]]
    second, rows = truth.restrict(users=np.array([False, True]))
    assert second.user_ids.tolist() == ["u2"] and rows.tolist() == [1]
