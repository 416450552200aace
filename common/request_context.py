"""Request context features (``REQUEST_CONTEXT`` in :mod:`common.features`), computed at request time.

ONE implementation of the rules, shared by serving (per request, scalars in) and the Spark training
sets (inside ``mapInPandas``, arrays in), so the hour/day/device a model is trained on is exactly what
serving feeds it. Pure numpy: no Feast, Spark or TensorFlow import. Inputs are the ``REQUEST_INPUTS`` of :mod:`common.features`: ``request_ts`` (epoch seconds, UTC) and
``device`` (free text from the client).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from common.features import REQUEST_CONTEXT

DEVICE_TYPES = ("web", "ios", "android", "other")
_DEVICE_ALIASES = {
    "web": "web", "desktop": "web", "browser": "web", "mobile_web": "web",
    "ios": "ios", "iphone": "ios", "ipad": "ios",
    "android": "android",
}
_SECONDS_PER_HOUR = 3600
_SECONDS_PER_DAY = 86_400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (0 = Monday)

HOUR_OF_DAY, DAY_OF_WEEK, IS_WEEKEND, DEVICE_TYPE = REQUEST_CONTEXT.names


def device_type(device: str | None) -> str:
    """Normalise a client's device string to one of :data:`DEVICE_TYPES`."""
    if not isinstance(device, str):
        return "other"
    return _DEVICE_ALIASES.get(device.strip().lower(), "other")


def request_context(
    request_ts: npt.ArrayLike, device: str | None | Iterable[str | None]
) -> dict[str, np.ndarray]:
    """The request context features of one request (scalars in) or of many (equal-length arrays in).

    ``request_ts`` is in epoch seconds (fractions are floored). Returns numpy arrays keyed by the
    ``REQUEST_CONTEXT`` field names (0-d arrays for a single request).
    """
    ts = np.floor(np.asarray(request_ts, dtype=np.float64)).astype(np.int64)
    day_of_week = (np.floor_divide(ts, _SECONDS_PER_DAY) + _EPOCH_WEEKDAY) % 7
    if isinstance(device, str) or device is None:
        devices = np.full(ts.shape, device_type(device), dtype=object)
    else:
        devices = np.array([device_type(d) for d in device], dtype=object).reshape(ts.shape)
    return {
        HOUR_OF_DAY: np.floor_divide(ts, _SECONDS_PER_HOUR) % 24,
        DAY_OF_WEEK: day_of_week,
        IS_WEEKEND: day_of_week >= 5,
        DEVICE_TYPE: devices,
    }
