"""The pipeline's stage plumbing: a thread pool with a bounded queue, and the ways a stage or a request
stops short (:class:`StageFailed` degrades the answer; :class:`DeadlineExceeded` and
:class:`NotReady` become 503s; :class:`PoolFull` refuses a stage at once instead of queueing it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class NotReady(Exception):
    """No release is loaded for the requested domain and the lake has nothing to serve it from."""


class StageFailed(Exception):
    """A stage raised or ran over its budget (the pipeline degrades; never surfaces to clients)."""


class DeadlineExceeded(Exception):
    """The request's end-to-end deadline passed before any of its work started (the API answers 503)."""


class PoolFull(Exception):
    """Every worker of the pipeline's pool is busy and its queue is full."""


class BoundedPool:
    """A thread pool whose queue is bounded: :meth:`submit` raises :class:`PoolFull` at once when
    ``workers + queue`` calls are already running or waiting (a cancelled call frees its place)."""

    def __init__(self, workers: int, queue: int, name: str = "pipeline") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._places = threading.BoundedSemaphore(workers + queue)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if not self._places.acquire(blocking=False):
            raise PoolFull
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._places.release()
            raise
        future.add_done_callback(lambda _: self._places.release())
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def left_ms(deadline: float) -> float:
    """Milliseconds until ``deadline`` (``time.perf_counter()`` seconds); negative once it passed."""
    return (deadline - time.perf_counter()) * 1000.0
