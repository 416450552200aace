"""The request-context computation shared by the on-demand view and serving (hand-computed cases)."""

from __future__ import annotations

import pytest

from common.features import REQUEST_CONTEXT
from common.online_features import request_context_columns, request_context_values


@pytest.mark.parametrize(
    ("request_ts", "hour", "day_of_week", "weekend"),
    [
        (0, 0, 3, False),  # 1970-01-01 00:00:00, a Thursday
        (1_700_000_000, 22, 1, False),  # 2023-11-14 22:13:20, a Tuesday
        (1_717_201_800, 0, 5, True),  # 2024-06-01 00:30:00, a Saturday
        (1_717_372_799, 23, 6, True),  # 2024-06-02 23:59:59, a Sunday
        (1_717_372_800, 0, 0, False),  # one second later: Monday 00:00:00
    ],
)
def test_time_features_are_utc_calendar_values(request_ts: int, hour: int, day_of_week: int, weekend: bool):
    values = request_context_values(request_ts, "web")
    assert (values["hour_of_day"], values["day_of_week"], values["is_weekend"]) == (
        hour,
        day_of_week,
        weekend,
    )


@pytest.mark.parametrize(
    ("device", "device_type"),
    [
        ("web", "web"),
        ("Desktop", "web"),
        (" iPhone ", "ios"),
        ("ios", "ios"),
        ("ANDROID", "android"),
        ("smart-tv", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_device_is_normalised(device: str | None, device_type: str):
    assert request_context_values(1_700_000_000, device)["device_type"] == device_type


def test_columns_follow_the_feature_module_and_the_scalar_function():
    columns = request_context_columns([0, 1_717_201_800], ["android", "tablet"])
    assert list(columns) == REQUEST_CONTEXT.names
    assert columns == {
        "hour_of_day": [0, 0],
        "day_of_week": [3, 5],
        "is_weekend": [False, True],
        "device_type": ["android", "other"],
    }
    with pytest.raises(ValueError):
        request_context_columns([0, 1], ["web"])
