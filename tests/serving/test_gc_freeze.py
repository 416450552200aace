"""serving.gc_freeze: the heap is frozen after a release loads (no ~280 ms full collection per ~1,000
requests, found by benchmarks.serving_load) and made collectable again after a swap. The test touches
only the process's GC state, and restores it."""

from __future__ import annotations

import gc
import time

from common.polling import wait_until
from serving.gc_freeze import HeapFreezer


def test_the_heap_is_frozen_after_a_load_and_collectable_again_after_a_swap() -> None:
    heap = HeapFreezer(grace_seconds=0.05)
    try:
        heap.release_loaded(replaced=False)
        assert gc.get_freeze_count() > 0
        heap.release_loaded(replaced=True)  # the old release must become collectable ...
        assert gc.get_freeze_count() == 0
        wait_until(lambda: gc.get_freeze_count() > 0, 5.0, "the re-freeze after the grace", poll=0.01)
        heap.release_loaded(replaced=True)
        heap.close()  # closing cancels the pending re-freeze and unfreezes
        time.sleep(0.1)  # longer than the grace: a re-freeze that was not cancelled would have happened
        assert gc.get_freeze_count() == 0
    finally:
        heap.close()
