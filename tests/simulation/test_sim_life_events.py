"""The banking world's life events: half the need variance inside segments, as documented, and needs
that follow the events in time."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from simulation.banking_products import PRODUCT_TYPES
from simulation.banking_world import BANKING_PARAMS, build_banking_world
from simulation.life_events import (
    LIFE_EVENT_SHARE,
    SHIFTS,
    WITHIN_SEGMENT_SHARE,
    calibration,
    within_segment_share,
)
from simulation.profiles import DomainSize
from simulation.world import US_PER_DAY

DAYS = 30
START_US = int(datetime(2024, 5, 6, tzinfo=UTC).timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def world():
    size = DomainSize(users=20_000, items=40, new_users_per_day=0, new_items_per_day=0,
                      sessions_per_user_day=0.05, slate_size=8)
    return build_banking_world(size, DAYS, START_US, np.random.default_rng(5))


def _needs(truth) -> np.ndarray:
    return truth.user_vec[:, : len(PRODUCT_TYPES)].astype(np.float64) / BANKING_PARAMS["need_scale"]


def test_half_the_need_variance_lies_inside_segments_at_the_end_of_the_period(world) -> None:
    truth = world.truth
    truth.advance_to(START_US + DAYS * US_PER_DAY)
    share = within_segment_share(_needs(truth), truth.user_segment.astype(np.int64))
    assert share == pytest.approx(WITHIN_SEGMENT_SHARE, abs=0.04)
    base = truth.user_vec_base[:, : len(PRODUCT_TYPES)].astype(np.float64) / BANKING_PARAMS["need_scale"]
    residual = _needs(truth) - base  # what the life events added
    events_var = residual.var(axis=0).mean()
    within = share * _needs(truth).var(axis=0).mean()
    assert events_var / within == pytest.approx(LIFE_EVENT_SHARE, abs=0.07)


def test_life_events_are_independent_of_the_segment(world) -> None:
    truth = world.truth
    per_user = np.bincount(truth.life_user, minlength=len(truth.user_ids))
    segments = truth.user_segment.astype(np.int64)
    means = np.bincount(segments, weights=per_user) / np.maximum(np.bincount(segments), 1)
    populated = np.bincount(segments) > 500
    assert np.ptp(means[populated]) < 0.15 * per_user.mean()


def test_needs_follow_the_events_in_time(world) -> None:
    truth = world.truth
    scale, _ = calibration(DAYS)
    for day in (0, 10, DAYS + 30):
        now = START_US + day * US_PER_DAY
        truth.advance_to(now)
        expected = _needs_base(truth)
        happened = truth.life_at_us < now
        np.add.at(expected, truth.life_user[happened], scale * SHIFTS[truth.life_kind[happened]])
        np.testing.assert_allclose(_needs(truth), expected, atol=1e-4)
    truth.advance_to(START_US)
    before = _needs(truth).copy()
    truth.advance_to(START_US + 60 * US_PER_DAY)
    changed = np.abs(_needs(truth) - before).max(axis=1) > 1e-6
    happened = np.unique(truth.life_user[(truth.life_at_us >= START_US) & (truth.life_at_us < START_US + 60 * US_PER_DAY)])
    assert set(np.flatnonzero(changed)) == set(happened) and len(happened) > 1000


def _needs_base(truth) -> np.ndarray:
    return truth.user_vec_base[:, : len(PRODUCT_TYPES)].astype(np.float64) / BANKING_PARAMS["need_scale"]
