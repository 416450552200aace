"""The online feature reader serving uses: opened on first use, re-opened at most every few seconds.

A store that is unreachable when the process starts (or later) does not stop the service: reads
raise :class:`StoreUnavailable`, the pipeline serves its popularity fallback, and the next attempt to
open the store comes after ``retry_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from common.online_features import ItemFeatures, UserFeatures
from serving.protocols import FeatureReader


class StoreUnavailable(RuntimeError):
    """The online store could not be opened (recently); the caller degrades."""


class LazyFeatureReader:
    def __init__(
        self, open_reader: Callable[[], FeatureReader], retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_reader
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._reader: FeatureReader | None = None
        self._failed_at = -float("inf")
        self._error = ""
        self._lock = threading.Lock()

    def _get(self) -> FeatureReader:
        reader = self._reader
        if reader is not None:
            return reader
        with self._lock:
            if self._reader is None:
                if self._clock() - self._failed_at < self.retry_seconds:
                    raise StoreUnavailable(f"online store unavailable: {self._error}")
                try:
                    self._reader = self._open()
                except Exception as err:  # any failure to open means "unavailable for now"
                    self._failed_at, self._error = self._clock(), f"{type(err).__name__}: {err}"
                    raise StoreUnavailable(f"online store unavailable: {self._error}") from err
            return self._reader

    def user_features(self, user_id: str) -> UserFeatures:
        return self._get().user_features(user_id)

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        return self._get().item_features(item_ids)
