"""The bootstrap ranking set's pure parts on hand-built frames: the per-user split by time and the
negative sampling (the launcher runs it end to end in ``test_train_launchers.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.bootstrap_ranking import (
    PAIR,
    candidate_pairs,
    labelled_examples,
    later_counts,
    random_pairs,
    sample_negatives,
    split_users,
)

T0 = pd.Timestamp("2025-03-01", tz="UTC")


def _at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def _interactions() -> pd.DataFrame:
    rows = [
        # u1: five items, one an hour; the last (i5) is the positive; i1 again after t is no positive
        *(("u1", f"i{n}", "view", _at(n)) for n in range(1, 6)),
        ("u1", "i1", "view", _at(7)),
        # u2: two items; the later one is purchased (the conversion event) -> converted
        ("u2", "i1", "view", _at(3)), ("u2", "i9", "view", _at(20)), ("u2", "i9", "purchase", _at(21)),
        # u3: one item, several events -> contributes nothing
        ("u3", "i2", "view", _at(1)), ("u3", "i2", "purchase", _at(1)), ("u3", "i2", "view", _at(5)),
        # u4: ten items (given newest first); the last two (j1, j0) are positives, t = j1's time
        *(("u4", f"j{n}", "view", _at(30 - n)) for n in range(10)),
        # u5: a MovieLens-like liked rating (view + purchase at once) after another rating -> one positive
        ("u5", "k1", "view", _at(2)), ("u5", "k2", "view", _at(4)), ("u5", "k2", "purchase", _at(4)),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])


def test_later_counts_keep_one_positive_and_one_history_item() -> None:
    assert later_counts(np.array([0, 1, 2, 3, 5, 8, 10, 100])).tolist() == [0, 0, 1, 1, 1, 2, 2, 20]
    assert later_counts(np.array([2, 4]), fraction=0.9).tolist() == [1, 3]  # never the whole history


def test_split_every_user_with_two_items_contributes_their_later_items() -> None:
    split = split_users(_interactions(), "purchase")
    got = {(r.user_id, r.item_id): (r.event_timestamp, r.converted) for r in split.positives.itertuples()}
    assert got == {
        ("u1", "i5"): (_at(5), 0),
        ("u2", "i9"): (_at(20), 1),
        ("u4", "j1"): (_at(29), 0), ("u4", "j0"): (_at(29), 0),  # both share the user's request time
        ("u5", "k2"): (_at(4), 1),
    }
    assert split.request_times.to_dict() == {"u1": _at(5), "u2": _at(20), "u4": _at(29), "u5": _at(4)}
    assert set(split.interacted.itertuples(index=False, name=None)) == set(
        _interactions()[PAIR].drop_duplicates().itertuples(index=False, name=None))


def test_history_is_what_came_before_the_request_time() -> None:
    split = split_users(_interactions(), "purchase")
    history = split.history.merge(split.request_times.rename("t"), left_on="user_id", right_index=True)
    assert (history["timestamp"] <= history["t"]).all()
    assert sorted(history.loc[history["user_id"] == "u1", "item_id"]) == ["i1", "i2", "i3", "i4"]  # not i1 at 7 h
    assert sorted(history.loc[history["user_id"] == "u4", "item_id"]) == [f"j{n}" for n in range(2, 10)]
    assert "u3" not in set(history["user_id"])
    positives = set(split.positives[PAIR].itertuples(index=False, name=None))
    assert not positives & set(split.history[PAIR].itertuples(index=False, name=None))


def test_split_without_any_user_with_two_items_is_empty() -> None:
    single = _interactions().query("user_id == 'u3'")
    split = split_users(single, "purchase")
    assert split.positives.empty and split.history.empty and len(split.interacted) == 1


def test_candidate_pairs_leave_out_padding_and_duplicates() -> None:
    users = np.array(["u1", "u2"], dtype=object)
    ids = {"collaborative": np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object),
           "popularity": np.array([["b", "x", "y"], ["z", "z2", "z3"]], dtype=object)}
    found = {"collaborative": np.array([2, 3]), "popularity": np.array([1, 0])}
    got = set(candidate_pairs(users, ids, found).itertuples(index=False, name=None))
    assert got == {("u1", "a"), ("u1", "b"), ("u2", "d"), ("u2", "e"), ("u2", "f")}


def test_negatives_never_hold_an_interacted_item_and_are_seeded() -> None:
    pool = pd.DataFrame({"user_id": ["u1"] * 6 + ["u2"] * 3 + ["u9"],
                         "item_id": ["a", "b", "c", "d", "e", "a", "a", "b", "c", "a"]})
    seen = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    wanted = pd.Series({"u1": 2, "u2": 5})
    got = sample_negatives(pool, seen, wanted, seed=3)
    assert got.groupby("user_id").size().to_dict() == {"u1": 2, "u2": 2}  # u2 has only two unseen; u9 not wanted
    assert set(got.loc[got["user_id"] == "u1", "item_id"]) <= {"c", "d", "e"}
    assert set(got.loc[got["user_id"] == "u2", "item_id"]) == {"a", "b"}
    assert got.equals(sample_negatives(pool.iloc[::-1], seen, wanted, seed=3))  # pool order does not matter


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9)), min_size=1, max_size=30),
       st.integers(0, 5), st.integers(0, 1000))
def test_random_negatives_never_hold_an_interacted_item(seen_pairs, per_user, seed) -> None:
    seen = pd.DataFrame([(f"u{u}", f"i{i}") for u, i in seen_pairs], columns=PAIR)
    wanted = pd.Series(per_user, index=sorted(set(seen["user_id"])))
    catalog = [f"i{i}" for i in range(10)]
    got = sample_negatives(random_pairs(wanted, catalog, seed), seen, wanted, seed)
    assert not set(got.itertuples(index=False, name=None)) & set(seen.itertuples(index=False, name=None))
    assert not got.duplicated().any() and (got.groupby("user_id").size() <= per_user).all()


def test_examples_are_one_request_per_user_at_its_request_time() -> None:
    split = split_users(_interactions(), "purchase")
    negatives = pd.DataFrame({"user_id": ["u1", "u1", "u4"], "item_id": ["n1", "n2", "n3"]})
    examples = labelled_examples("retail", split.positives, negatives)
    assert list(examples.columns) == ["request_id", "domain", "user_id", "item_id", "event_timestamp", "device",
                                      "clicked", "converted"]
    assert examples["clicked"].sum() == len(split.positives) and len(examples) == len(split.positives) + 3
    u1 = examples[examples["user_id"] == "u1"]
    assert set(u1["event_timestamp"]) == {_at(5)} and u1["request_id"].nunique() == 1
    assert examples.loc[examples["clicked"] == 0, "converted"].eq(0).all()
    assert examples["device"].isna().all() and "position" not in examples


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_split_is_vectorised_and_deterministic(fraction: float) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.choice([f"u{u}" for u in range(200)], 5000),
                          "item_id": rng.choice([f"i{i}" for i in range(300)], 5000),
                          "event_type": "view", "timestamp": T0 + pd.to_timedelta(rng.integers(0, 10**6, 5000), "s")})
    first, second = split_users(frame, "purchase", fraction), split_users(frame.sample(frac=1, random_state=1), "purchase", fraction)
    pd.testing.assert_frame_equal(first.positives.sort_values(PAIR, ignore_index=True),
                                  second.positives.sort_values(PAIR, ignore_index=True))
    distinct = frame.drop_duplicates(PAIR).groupby("user_id").size()
    counts = first.positives.groupby("user_id").size()
    assert set(counts.index) == set(distinct[distinct >= 2].index)
    assert (counts == pd.Series(later_counts(distinct.to_numpy(), fraction), index=distinct.index)[counts.index]).all()
