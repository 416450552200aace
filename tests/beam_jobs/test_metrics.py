"""The job's metrics: counters folded per batch, hand-computed freshness percentiles, the exports."""

from __future__ import annotations

import httpx
import orjson

from beam_jobs.metrics import StreamMetrics, percentiles
from feature_repo.redis_server import free_port


def test_percentiles_are_exact_on_a_small_sample() -> None:
    assert percentiles([]) == {"count": 0}
    stats = percentiles([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats == {"count": 5, "p50": 3.0, "p90": 4.6, "p99": 4.96, "max": 5.0}


def test_batches_fold_into_the_summary_and_the_exports(tmp_path) -> None:
    port = free_port()
    metrics = StreamMetrics(tmp_path, port=port)
    try:
        metrics.record_batch({"lines": 10, "valid_events": 9, "duplicates": 1, "dead_letters": 2,
                              "dead_letter.malformed_json": 1, "dead_letter.duplicate_event_id": 1,
                              "pushed.user_activity": 4}, [("user_activity", 1.0), ("user_activity", 3.0)],
                             started=100.0, seconds=2.0)
        metrics.record_batch({"lines": 5, "valid_events": 5, "pushed.item_stats": 2}, [("item_stats", 2.0)],
                             started=104.0, seconds=1.0)
        summary = metrics.export()
        served = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        metrics.close()
    assert summary["events"] == 13 and summary["batches"] == 2 and summary["lines"] == 15
    assert summary["events_per_second"] == 13 / 5.0 and summary["capacity_events_per_second"] == 13 / 3.0
    assert summary["dead_letters"] == {"duplicate_event_id": 1, "malformed_json": 1}
    assert summary["pushed"] == {"item_stats": 2, "user_activity": 4}
    assert summary["freshness_seconds"]["all"]["p50"] == 2.0
    assert summary["freshness_seconds"]["user_activity"]["max"] == 3.0
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["events"] == 13
    text = (tmp_path / "metrics.prom").read_text()
    for exported in (text, served):
        assert 'recsys_stream_dead_letters_total{reason="malformed_json"} 1.0' in exported
        assert 'recsys_stream_freshness_seconds_count{view="user_activity"} 2.0' in exported
        assert "recsys_stream_events_total 13.0" in exported and "recsys_stream_batches_total 2.0" in exported
        assert 'recsys_stream_freshness_seconds_bucket{le="1.0",view="user_activity"} 1.0' in exported
        assert 'recsys_stream_freshness_seconds_bucket{le="3.0",view="user_activity"} 2.0' in exported
