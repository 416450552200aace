"""Rolling popularity: decay, window and segments checked against hand-computed scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.retrieval.popularity import GLOBAL, PopularityConfig, PopularityTable, segments_from

AS_OF = pd.Timestamp("2024-01-31 00:00", tz="UTC")


def _event(user: str, item: str, days_ago: float, weight: float) -> dict:
    return {"user_id": user, "item_id": item, "timestamp": AS_OF - pd.Timedelta(days=days_ago), "weight": weight}


@pytest.fixture
def interactions() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _event("fr1", "A", 0, 1.0),  # 1 * 2^0 = 1
            _event("de1", "A", 7, 4.0),  # 4 * 2^-1 = 2
            _event("fr1", "B", 14, 2.0),  # 2 * 2^-2 = 0.5
            _event("fr1", "B", 31, 8.0),  # outside the 30-day window
            _event("de1", "C", -1, 9.0),  # after as_of: never counted
            _event("zz9", "D", 21, 16.0),  # 16 * 2^-3 = 2, user without a segment
        ]
    )


def test_scores_decay_and_window_by_hand(interactions: pd.DataFrame) -> None:
    config = PopularityConfig(window_days=30, half_life_days=7, top_n=10)
    table = PopularityTable.build(interactions, AS_OF, config, {"fr1": "FR", "de1": "DE"})
    ids, scores = table.top(None, 10)
    assert ids == ["A", "D", "B"]  # A = 1 + 2 = 3.0; D = 2.0; B = 0.5
    np.testing.assert_allclose(scores, [3.0, 2.0, 0.5], rtol=1e-6)
    fr_ids, fr_scores = table.top("FR", 10)
    assert fr_ids == ["A", "B", "D"]  # FR's own items, then the global back-fill with score 0
    np.testing.assert_allclose(fr_scores, [1.0, 0.5, 0.0], rtol=1e-6)
    de_ids, de_scores = table.top("DE", 2)
    assert de_ids == ["A", "D"]
    np.testing.assert_allclose(de_scores, [2.0, 0.0], rtol=1e-6)
    unknown_ids, unknown_scores = table.top("unknown-segment", 1)
    assert unknown_ids == ["A"] and unknown_scores.tolist() == [3.0]
    assert table.segments == sorted([GLOBAL, "FR", "DE"])


def test_naive_as_of_is_utc_and_later_as_of_decays_more(interactions: pd.DataFrame) -> None:
    config = PopularityConfig(window_days=30, half_life_days=7)
    week_later = PopularityTable.build(interactions, "2024-02-07 00:00", config)
    ids, scores = week_later.top(None, 10)
    # A: 1*2^-1 + 4*2^-2 = 1.5; C (now 6 days old): 9*2^(-6/7); D: 16*2^-4 = 1; B: 2*2^-3 = 0.25
    assert ids == ["C", "A", "D", "B"]
    np.testing.assert_allclose(scores, [9 * 2 ** (-6 / 7), 1.5, 1.0, 0.25], rtol=1e-6)


def test_top_n_limits_and_save_load_round_trip(interactions: pd.DataFrame, tmp_path: Path) -> None:
    table = PopularityTable.build(interactions, AS_OF, PopularityConfig(top_n=2), {"fr1": "FR"})
    assert len(table.top(None, 10)[0]) == 2 and len(table.top("FR", 10)[0]) == 2
    table.save(tmp_path / "pop.parquet")
    loaded = PopularityTable.load(tmp_path / "pop.parquet")
    assert loaded.as_of == AS_OF and loaded.config == table.config
    for segment in (None, "FR"):
        assert loaded.top(segment, 5)[0] == table.top(segment, 5)[0]
        np.testing.assert_array_equal(loaded.top(segment, 5)[1], table.top(segment, 5)[1])


def test_empty_window_gives_empty_lists() -> None:
    old = pd.DataFrame([_event("u", "A", 90, 1.0)])
    table = PopularityTable.build(old, AS_OF, PopularityConfig(window_days=30))
    ids, scores = table.top(None, 5)
    assert ids == [] and len(scores) == 0


def test_segments_from_profile_column() -> None:
    profiles = pd.DataFrame({"user_id": ["a", "b"], "country": ["FR", None]})
    assert segments_from(profiles, "country") == {"a": "FR"}
    assert segments_from(profiles, None) == {} and segments_from(None, "country") == {}
