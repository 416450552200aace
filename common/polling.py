"""Waiting for something to happen: poll a condition until it holds, fail loudly past a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str = "the condition", poll: float = 0.05,
               give_up: Callable[[], str | None] | None = None) -> T:
    """Call ``condition`` every ``poll`` seconds until it returns a truthy value, and return that value.

    Raises :class:`TimeoutError` naming ``what`` once ``timeout`` seconds have passed. ``give_up``, when
    given, is asked every round: a reason (not None) stops the wait at once with a RuntimeError, for
    waits that can no longer succeed (the process being waited on has died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if give_up is not None and (reason := give_up()) is not None:
            raise RuntimeError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(poll)
