"""Each DoFn / composite of the micro-batch on tiny inputs (TestPipeline on the direct runner + assert_that)."""

from __future__ import annotations

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.catalog import StreamCatalog, load_stream_catalog
from beam_jobs.checkpoint import Batch, CheckpointStore
from beam_jobs.dedupe import UNIQUE, DedupeBatch
from beam_jobs.features import HourlyItemCounts, ItemStatsBatch, UserActivityBatch
from beam_jobs.item_state import HOUR, HourDelta, ItemCounts, ItemState
from beam_jobs.microbatch import counters
from beam_jobs.parse import REJECTED, ParseEvents
from beam_jobs.records import Rejected, SourceLine, StreamEvent
from beam_jobs.sinks import WriteDeadLetters, WriteLake, dead_letter_files
from beam_jobs.user_state import UserActivityState
from common.deadletter import read_dead_letters
from common.features import ITEM_STATS, USER_ACTIVITY
from common.schemas import Reason, Rejection, validate_event

ARRIVALS = 2 * 3_600  # the test events arrive from 2 h after T0 on: after their own time, as they would


def arrival(events, seconds: float) -> float:
    return events.t0.timestamp() + ARRIVALS + seconds


def stream_event(events, n: int, *args, offset: int | None = None, arrived: float = 100.0, **kwargs) -> StreamEvent:
    """A validated ``StreamEvent`` that arrived ``arrived`` seconds after ``ARRIVALS``."""
    event, rejection = validate_event(events.record(n, *args, **kwargs))
    assert rejection is None, rejection
    return StreamEvent(event, "retail/a.jsonl", n * 100 if offset is None else offset, arrival(events, arrived))


def test_parse_events_dead_letters_every_kind_of_bad_record(events, fnapi) -> None:
    good = events.record(1)
    stamped = events.record(2, ingested_at="2024-06-03T10:00:05Z")
    missing = {k: v for k, v in events.record(3).items() if k != "user_id"}
    bad_lines = {
        b"{not json": Reason.MALFORMED_JSON,
        events.line(missing): Reason.MISSING_FIELD,
        events.line(events.record(4, "purchase", quantity="2")): Reason.WRONG_TYPE,
        events.line(events.record(5, domain="grocery")): Reason.UNKNOWN_DOMAIN,
        events.line(events.record(6, domain="movielens", user="ml_u1", item="ml_1")): "domain_read_only",
        b"[1, 2]": Reason.NOT_AN_OBJECT,
    }
    lines = [SourceLine("retail/a.jsonl", k, line, 50.0) for k, line in
             enumerate([events.line(good), events.line(stamped), b"   ", *bad_lines])]
    p = BeamTestPipeline(runner=fnapi())
    parsed = p | beam.Create(lines) | beam.ParDo(ParseEvents()).with_outputs(REJECTED, main="events")
    assert_that(parsed.events | beam.Map(lambda e: (e.event_id, e.offset, e.arrived_at)),
                equal_to([("e1", 0, 50.0), ("e2", 1, 1717408805.0)]), label="valid")
    assert_that(parsed[REJECTED] | beam.Map(lambda r: (r.raw, r.rejection.code)),
                equal_to(list(bad_lines.items())), label="rejected")
    result = p.run()
    totals = counters(result)
    assert totals["lines"] == 9 and totals["blank_lines"] == 1 and totals["valid_events"] == 2
    assert totals["dead_letters"] == 6 and totals["dead_letter.malformed_json"] == 1
    assert totals["dead_letter.domain_read_only"] == 1


def test_dedupe_keeps_the_first_occurrence_and_remembers_across_batches(data_paths, events, fnapi) -> None:
    store = CheckpointStore(data_paths.root / "ck.db")
    earlier = store.begin([])
    store.stage_seen(earlier.id, ["e9"])
    store.commit(earlier)
    batch = store.begin([])
    inputs = [stream_event(events, 1, offset=50), stream_event(events, 1, offset=0), stream_event(events, 2),
              stream_event(events, 9)]
    with BeamTestPipeline(runner=fnapi()) as p:
        this_batch = beam.pvalue.AsSingleton(p | "Batch" >> beam.Create([batch]))
        out = p | beam.Create(inputs) | DedupeBatch(str(store.path), this_batch)
        assert_that(out[UNIQUE] | beam.Map(lambda e: (e.event_id, e.offset)), equal_to([("e1", 0), ("e2", 200)]),
                    label="unique")
        assert_that(out[REJECTED] | beam.Map(lambda r: (r.raw["event_id"], r.rejection.code, r.rejection.detail)),
                    equal_to([("e1", Reason.DUPLICATE_EVENT_ID, "event 'e1' repeats retail/a.jsonl at byte 0"),
                              ("e9", Reason.DUPLICATE_EVENT_ID, "event 'e9' was already processed by an earlier batch")]),
                    label="duplicates")
    assert not store.is_seen("e1")  # staged only: the batch is not committed yet
    store.commit(batch)
    assert store.is_seen("e1") and store.is_seen("e2")


def test_hourly_item_counts_split_by_event_hour(events, fnapi) -> None:
    h0 = int(events.t0.timestamp())
    inputs = [stream_event(events, 1, "view", seconds=10, arrived=7.0),
              stream_event(events, 2, "impression", seconds=3_599, arrived=5.0),
              stream_event(events, 3, "click", seconds=3_600, request_id="q", arrived=9.0),
              stream_event(events, 4, "view", item="r_i2", seconds=-1, arrived=1.0)]
    with BeamTestPipeline(runner=fnapi()) as p:
        out = p | beam.Create(inputs) | HourlyItemCounts()
        assert_that(out, equal_to([
            ("r_i1", HourDelta(h0, ItemCounts(1, 1, 0, arrival(events, 5.0), h0 + 3_599.0))),
            ("r_i1", HourDelta(h0 + HOUR, ItemCounts(1, 0, 1, arrival(events, 9.0), h0 + 3_600.0))),
            ("r_i2", HourDelta(h0 - HOUR, ItemCounts(1, 0, 0, arrival(events, 1.0), h0 - 1.0))),
        ]))


def _updates(pcoll):
    return pcoll | beam.Map(lambda u: (u.view, u.entity_id, u.row, u.arrived_at, u.expires_at))


def test_user_activity_batch_folds_into_committed_state(catalog_paths, events, fnapi) -> None:
    store = CheckpointStore(catalog_paths.root / "ck.db")
    prior = UserActivityState("retail")
    prior.apply(validate_event(events.record(0, item="r_i3", seconds=-60))[0], "Bags>City")
    seed = store.begin([])
    store.stage_states(seed.id, [(USER_ACTIVITY.name, "r_u1", "retail", None, prior.to_json())])
    store.commit(seed)
    t0 = int(events.t0.timestamp())
    inputs = [stream_event(events, 1, "view", item="r_i1", arrived=30.0),
              stream_event(events, 2, "impression", item="r_i2", arrived=10.0),
              stream_event(events, 3, "impression", user="r_u2", item="r_i2")]
    with BeamTestPipeline(runner=fnapi()) as p:
        catalog = p | "Catalog" >> beam.Create([str(catalog_paths.root)]) | beam.Map(load_stream_catalog)
        out = p | beam.Create(inputs) | UserActivityBatch(str(store.path), catalog, seed_from=None)
        assert_that(_updates(out), equal_to([(USER_ACTIVITY.name, "r_u1", {
            "user_id": "r_u1", "event_timestamp": t0, "session_depth": 2, "last_event_ts": t0,
            "last_purchase_ts": 0, "recent_item_ids": ["r_i1", "r_i3"],
            "recent_category_keys": ["Shoes>Running>Trail", "Bags>City"], "recent_category_counts": [1, 1],
            "salary_credit": 0.0, "salary_credit_ts": 0, "salary_change_ts": 0, "large_transfer_ts": [],
        }, arrival(events, 30.0), None)]))  # r_u2 saw impressions only: no row


def test_item_stats_batch_counts_sells_out_and_refreshes_expired_items(data_paths, events, fnapi) -> None:
    store = CheckpointStore(data_paths.root / "ck.db")
    h0 = int(events.t0.timestamp())
    old = ItemState("retail", buckets={h0 - 23 * HOUR: (4, 0, 0)}, base_inventory=40)
    setup = store.begin([])
    store.stage_states(setup.id, [(ITEM_STATS.name, "r_i4", "retail", old.expires_at(), old.to_json())])
    store.stage_watermarks(setup.id, [("retail", float(h0))])
    store.commit(setup)
    batch = store.begin([])
    inputs = [stream_event(events, 1, "impression", item="r_i2", seconds=100, arrived=20.0),
              stream_event(events, 2, "click", item="r_i2", seconds=200, request_id="q1", arrived=21.0),
              stream_event(events, 3, "purchase", item="r_i2", seconds=3_700, quantity=2, arrived=22.0)]
    catalog_index = StreamCatalog({}, {"r_i2": 2, "r_i4": 40})
    with BeamTestPipeline(runner=fnapi()) as p:
        catalog = p | "Catalog" >> beam.Create([catalog_index])
        this_batch = beam.pvalue.AsSingleton(p | "Batch" >> beam.Create([batch]))
        out = p | beam.Create(inputs) | ItemStatsBatch(str(store.path), this_batch, catalog)
        as_of = h0 + 3_700
        assert_that(_updates(out), equal_to([
            (ITEM_STATS.name, "r_i2", {"item_id": "r_i2", "event_timestamp": as_of, "popularity_1d": 2,
                                       "impressions_1d": 1, "ctr_1d": pytest.approx(2 / 21), "inventory": 0,
                                       "in_stock": False}, arrival(events, 20.0), h0 + 24 * HOUR),
            (ITEM_STATS.name, "r_i4", {"item_id": "r_i4", "event_timestamp": as_of, "popularity_1d": 0,
                                       "impressions_1d": 0, "ctr_1d": pytest.approx(1 / 20), "inventory": 40,
                                       "in_stock": True}, None, None),  # an hour left its window: re-pushed
        ]))
    store.commit(batch)
    assert store.watermark("retail") == h0 + 3_700


def test_lake_writes_are_idempotent_per_batch_name(data_paths, events, fnapi) -> None:
    inputs = [stream_event(events, 1, seconds=5), stream_event(events, 2, seconds=-86_400),
              stream_event(events, 3, "view", user="b_u1", item="b_p1", domain="banking")]
    for _ in range(2):  # a replay of the same batch replaces its files
        with BeamTestPipeline(runner=fnapi()) as p:
            this_batch = beam.pvalue.AsSingleton(p | "Batch" >> beam.Create([Batch(7, ())]))
            p | beam.Create(inputs) | WriteLake(str(data_paths.root), batch=this_batch)
    files = sorted(p.relative_to(data_paths.events).as_posix() for p in data_paths.events.rglob("*.parquet"))
    assert files == ["domain=banking/date=2024-06-03/batch-0000000007.parquet",
                     "domain=retail/date=2024-06-02/batch-0000000007.parquet",
                     "domain=retail/date=2024-06-03/batch-0000000007.parquet"]
    table = pq.read_table(data_paths.events / files[2])
    assert table.column("event_id").to_pylist() == ["e1"] and table.column("user_id").to_pylist() == ["r_u1"]


def test_dead_letters_are_written_with_their_reason(data_paths, fnapi) -> None:
    rejected = [Rejected(b"{oops", Rejection(Reason.MALFORMED_JSON, None, "not valid JSON")),
                Rejected({"event_id": "e1"}, Rejection(Reason.DUPLICATE_EVENT_ID, "event_id", "repeats"))]
    with BeamTestPipeline(runner=fnapi()) as p:
        this_batch = beam.pvalue.AsSingleton(p | "Batch" >> beam.Create([Batch(3, ())]))
        p | beam.Create(rejected) | beam.ParDo(WriteDeadLetters(str(data_paths.root)), this_batch)
    assert len(dead_letter_files(data_paths, "batch-0000000003")) == 1
    records = sorted(read_dead_letters(data_paths, "streaming"), key=lambda r: r["reason"]["code"])
    assert [(r["reason"]["code"], r["record"]) for r in records] == [
        (Reason.DUPLICATE_EVENT_ID, {"event_id": "e1"}), (Reason.MALFORMED_JSON, "{oops")]
