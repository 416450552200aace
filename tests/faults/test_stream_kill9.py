"""Fault: the streaming job is SIGKILLed at seeded random moments under a steady input rate and
restarted each time; every acknowledged event is counted exactly once (lake, dead letters, online
item counters and inventory, users' session depth). The short version of
``python -m benchmarks.stream_restarts``."""

from __future__ import annotations

import pytest

from benchmarks.stream_restarts import run


@pytest.mark.slow
def test_three_kill_9s_at_100_events_per_second_lose_nothing_and_count_nothing_twice() -> None:
    result = run(kills=3, rate=100, seed=16)
    assert result["acknowledged_events"] > 0 and len(result["kill_log"]) == 3
    assert (result["lost_events"], result["double_counted_events"], result["unacknowledged_in_lake"]) == (0, 0, 0)
    assert result["dead_letters"] == {}
    assert result["items_with_wrong_counters"] == 0 and result["users_with_wrong_session_depth"] == 0
    assert result["exactly_once"]
