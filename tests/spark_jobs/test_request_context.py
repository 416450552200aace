"""Request context features (common/request_context.py): hand-computed cases and parity with the Feast
on-demand view's implementation in common/online_features.py."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from common.request_context import DEVICE_TYPES, device_type, request_context

SUNDAY_0930 = int(datetime(2025, 3, 9, 9, 30, tzinfo=UTC).timestamp())
MONDAY_2359 = int(datetime(2025, 3, 10, 23, 59, 59, tzinfo=UTC).timestamp())


def test_one_request():
    ctx = request_context(SUNDAY_0930, " iPhone ")
    assert (ctx["hour_of_day"], ctx["day_of_week"], ctx["is_weekend"], ctx["device_type"]) == (9, 6, True, "ios")


def test_many_requests_and_fractions():
    ctx = request_context(np.array([SUNDAY_0930, MONDAY_2359 + 0.9, -3600]), ["Android", "desktop", None])
    np.testing.assert_array_equal(ctx["hour_of_day"], [9, 23, 23])
    np.testing.assert_array_equal(ctx["day_of_week"], [6, 0, 2])  # 1969-12-31 was a Wednesday
    np.testing.assert_array_equal(ctx["is_weekend"], [True, False, False])
    assert ctx["device_type"].tolist() == ["android", "web", "other"]


def test_device_types():
    assert [device_type(d) for d in ("web", "Mobile_Web", "ipad", "ANDROID", "tablet", "", None)] == [
        "web", "web", "ios", "android", "other", "other", "other",
    ]
    assert set(DEVICE_TYPES) == {"web", "ios", "android", "other"}


def test_same_values_as_the_feast_on_demand_view():
    from common.online_features import request_context_values

    stamps = np.arange(-86_400 * 3, 86_400 * 9, 3_599 * 5)
    devices = ["web", "ios", "android", "Desktop", "iPad", "tv", None]
    for device in devices:
        ours = request_context(stamps, [device] * len(stamps))
        for i, stamp in enumerate(stamps):
            theirs = request_context_values(int(stamp), device)
            assert {k: ours[k].tolist()[i] for k in theirs} == theirs
