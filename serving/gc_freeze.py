"""Keep the garbage collector's full collections off the request path.

A process serving a release holds ~500,000 long-lived Python objects (TensorFlow, ScaNN, pandas,
Feast). CPython's full (generation 2) collection walks all of them with the GIL held: measured
~280 ms on this 2-core machine, during which every request in flight waits -- about once every
1,000-2,000 requests under load, so on its own it sets the p99. :func:`gc.freeze` moves every object
alive after a release load into a permanent generation that collections skip; a full collection then
takes ~1 ms.

Frozen objects are never collected, so a hot swap unfreezes the heap: the replaced release's
objects become garbage the collector can free. After ``grace_seconds`` (requests in flight finish on
the old release) one full collection runs in the background and the heap is frozen again -- one
pause per swap, the pause a natural full collection would have caused anyway. Closing unfreezes.
"""

from __future__ import annotations

import gc
import threading


class HeapFreezer:
    def __init__(self, grace_seconds: float = 5.0) -> None:
        self.grace_seconds = grace_seconds
        self._lock = threading.Lock()
        self._pending: threading.Timer | None = None

    def release_loaded(self, replaced: bool) -> None:
        """Called after a release went live; ``replaced``: it took over from another release."""
        with self._lock:
            if replaced:
                gc.unfreeze()
                if self._pending is not None:
                    self._pending.cancel()
                self._pending = threading.Timer(self.grace_seconds, self._refreeze)
                self._pending.daemon = True
                self._pending.start()
            elif self._pending is None:  # a first load: what is alive now lives as long as the process
                gc.freeze()

    def _refreeze(self) -> None:
        with self._lock:
            if self._pending is not threading.current_thread():  # cancelled or superseded meanwhile
                return
            self._pending = None
            gc.collect()
            gc.freeze()

    def close(self) -> None:
        """Stop a pending re-freeze and make everything collectable again."""
        with self._lock:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            gc.unfreeze()
