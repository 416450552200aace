"""Windows, state and timers under TestStream: out-of-order, late and too-late events, early panes,
processing-time flushes, event-time expiry, and the whole unbounded graph behind a TestStream source."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_jobs.catalog import StreamCatalog
from beam_jobs.dedupe import UNIQUE, DedupeFn
from beam_jobs.feast_io import FeastTarget
from beam_jobs.features import HourlyItemCounts
from beam_jobs.item_state import HOUR, HourDelta, ItemCounts, Sale
from beam_jobs.parse import REJECTED
from beam_jobs.records import SourceLine, StreamEvent
from beam_jobs.stateful import ItemStatsFn, UserActivityFn
from beam_jobs.unbounded import UnboundedSettings, build_unbounded
from common.deadletter import read_dead_letters
from common.features import ITEM_STATS, USER_ACTIVITY
from common.lake import read_events
from common.online_features import OnlineFeatures
from common.schemas import validate_event

DAY = 86_400


def stream_clock() -> float:
    """Processing time as the TestStream's clock starts it (epoch 0); timers set on it fire when the
    stream advances processing time."""
    return 0.0


def _stream_event(events, n: int, kind: str = "view", seconds: float = 0.0, **kwargs) -> StreamEvent:
    event, rejection = validate_event(events.record(n, kind, seconds=seconds, **kwargs))
    assert rejection is None, rejection
    return StreamEvent(event, "test", n, event.timestamp.timestamp() + 1.0)  # arrived a second after


def _at(event: StreamEvent) -> TimestampedValue:
    return TimestampedValue(event, event.ts)


def test_hourly_counts_take_out_of_order_and_late_events_and_drop_too_late_ones(events, streaming_pipeline) -> None:
    h0 = int(events.t0.timestamp())
    e = lambda n, kind, s: _at(_stream_event(events, n, kind, s))  # noqa: E731
    stream = (
        BeamTestStream()
        .advance_watermark_to(h0)
        .add_elements([e(1, "view", 10), e(2, "view", 3_700), e(3, "impression", 20)])  # e3 out of order
        .advance_watermark_to(h0 + 2 * HOUR)  # both hours fire on time
        .add_elements([e(4, "view", 30)])  # late for hour h0, within the allowed day: a late delta pane
        .advance_watermark_to(h0 + HOUR + DAY + 1)  # hour h0 is now past its allowed lateness
        .add_elements([e(5, "view", 40)])  # too late: dropped
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream | HourlyItemCounts(streaming=True)
        assert_that(out, equal_to([
            ("r_i1", HourDelta(h0, ItemCounts(1, 1, 0, h0 + 11.0, h0 + 20.0))),
            ("r_i1", HourDelta(h0 + HOUR, ItemCounts(1, 0, 0, h0 + 3_701.0, h0 + 3_700.0))),
            ("r_i1", HourDelta(h0, ItemCounts(1, 0, 0, h0 + 31.0, h0 + 30.0))),
        ]))


def test_hourly_counts_fire_early_panes_as_deltas(events, streaming_pipeline) -> None:
    h0 = int(events.t0.timestamp())
    stream = (
        BeamTestStream()
        .advance_watermark_to(h0)
        .add_elements([_at(_stream_event(events, 1, "view", 10))])
        .advance_processing_time(5)  # early pane: what came so far
        .add_elements([_at(_stream_event(events, 2, "view", 20)), _at(_stream_event(events, 3, "view", 30))])
        .advance_watermark_to_infinity()  # on-time pane: only what came since (discarding)
    )
    with streaming_pipeline() as p:
        out = p | stream | HourlyItemCounts(streaming=True, early_firing_seconds=1)
        assert_that(out | beam.Map(lambda kv: kv[1].counts.positives), equal_to([1, 2]))


def test_user_activity_fn_batches_by_processing_time_and_keeps_state(events, streaming_pipeline) -> None:
    t0 = int(events.t0.timestamp())
    e1, e2, e3 = (_stream_event(events, n, "view", seconds=n, item=item) for n, item in ((1, "r_i1"), (2, "r_i2"), (3, "r_i1")))
    stream = (
        BeamTestStream()
        .add_elements([("r_u1", e1), ("r_u1", e2)])
        .advance_processing_time(5)
        .add_elements([("r_u1", e3)])
        .advance_processing_time(5)
        .advance_watermark_to_infinity()
    )
    catalog = StreamCatalog({"r_i1": "A", "r_i2": "B"}, {})
    with streaming_pipeline() as p:
        side = beam.pvalue.AsSingleton(p | "Catalog" >> beam.Create([catalog]))
        out = p | stream | beam.ParDo(UserActivityFn(1.0, seed_from=None, clock=stream_clock), side)
        assert_that(out | beam.Map(lambda u: (u.view, u.row["session_depth"], u.row["recent_item_ids"],
                                              u.row["recent_category_counts"], u.row["last_event_ts"])),
                    equal_to([(USER_ACTIVITY.name, 2, ["r_i2", "r_i1"], [1, 1], t0 + 2),
                              (USER_ACTIVITY.name, 3, ["r_i1", "r_i2"], [1, 1], t0 + 3)]))


def test_item_stats_fn_flushes_and_re_emits_when_an_hour_expires(events, streaming_pipeline) -> None:
    h0 = int(events.t0.timestamp())
    delta = HourDelta(h0, ItemCounts(3, 10, 1, 5.0, h0 + 10.0))
    stream = (
        BeamTestStream()
        .advance_watermark_to(h0)
        .add_elements([TimestampedValue(("r_i2", delta), h0 + 10), TimestampedValue(("r_i2", Sale(2, 6.0)), h0 + 10)])
        .advance_processing_time(5)
        .advance_watermark_to(h0 + DAY + 1)  # the hour leaves the 1-day window: the expiry timer fires
        .advance_watermark_to_infinity()
    )
    catalog = StreamCatalog({}, {"r_i2": 2})
    with streaming_pipeline() as p:
        side = beam.pvalue.AsSingleton(p | "Catalog" >> beam.Create([catalog]))
        out = p | stream | beam.ParDo(ItemStatsFn(1.0, clock=stream_clock), side)
        assert_that(out | beam.Map(lambda u: (u.view, u.row["popularity_1d"], u.row["impressions_1d"],
                                              u.row["in_stock"], u.arrived_at)),
                    equal_to([(ITEM_STATS.name, 3, 10, False, 5.0), (ITEM_STATS.name, 0, 0, False, None)]))


def test_dedupe_fn_rejects_repeats_until_the_id_expires(events, streaming_pipeline) -> None:
    e1 = _stream_event(events, 1)
    stream = (
        BeamTestStream()
        .add_elements([("e1", e1), ("e1", e1)])
        .advance_processing_time(120)  # past the 60 s retention: the id is forgotten
        .add_elements([("e1", e1)])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream | beam.ParDo(DedupeFn(60, clock=stream_clock)).with_outputs(REJECTED, main=UNIQUE)
        assert_that(out[UNIQUE] | beam.Map(lambda e: e.event_id), equal_to(["e1", "e1"]), label="unique")
        assert_that(out[REJECTED] | beam.Map(lambda r: r.rejection.code), equal_to(["duplicate_event_id"]),
                    label="rejected")


def test_unbounded_graph_reaches_the_online_store_and_the_lake(feast_paths, events, streaming_pipeline) -> None:
    t0 = int(events.t0.timestamp())
    records = [events.record(1, "view", user="r_u7", item="r_i1"),
               events.record(2, "purchase", user="r_u7", item="r_i2", seconds=5, quantity=2),
               events.record(2, "purchase", user="r_u7", item="r_i2", seconds=5, quantity=2),  # duplicate
               # account events (common/account_events.py): to the lake and the account state of
               # user_activity, not into the user's items or any item's state
               events.record(3, "card_spend", user="b_u7", item="b_mcc_travel", seconds=7, domain="banking",
                             session_id=None, value=120.0),
               *(events.record(n, kind, user="b_u7", item=item, seconds=n, domain="banking", session_id=None, value=value)
                 for n, kind, item, value in ((4, "salary_credit", "b_acct_salary", 4000.0),
                                              (5, "salary_credit", "b_acct_salary", 4600.0),
                                              (6, "transfer", "b_xfer_out", 12_000.0)))]
    lines = [SourceLine("pubsub", -1, events.line(r), float(t0)) for r in records] + [
        SourceLine("pubsub", -1, b"{bad", float(t0))]
    stream = (
        BeamTestStream()
        .advance_watermark_to(t0)
        .add_elements([TimestampedValue(line, t0) for line in lines])
        .advance_processing_time(5)  # early hourly panes and the first flushes
        .advance_processing_time(5)  # flushes of what the early panes delivered
        .advance_watermark_to_infinity()  # the stream ends: a day has passed for every item window
    )
    root = str(feast_paths.root)
    settings = UnboundedSettings(root, FeastTarget(root), flush_seconds=1.0, seed_users=False, clock=stream_clock)
    with streaming_pipeline() as p:
        catalog = p | "Catalog" >> beam.Create([StreamCatalog({"r_i1": "A", "r_i2": "B"}, {"r_i2": 2})])
        build_unbounded(p | stream, catalog, settings)
    online = OnlineFeatures(FeastTarget(root).open().store)
    user = online.user_features("r_u7").values
    assert (user["session_depth"], user["recent_item_ids"], user["last_purchase_ts"]) == (2, ["r_i2", "r_i1"], t0 + 5)
    items = online.item_features(["r_i1", "r_i2"]).columns
    assert list(items["inventory"]) == [0, 0] and list(items["in_stock"]) == [False, False]  # r_i2 sold out
    assert list(items["popularity_1d"]) == [0, 0]  # pushed again when their hour left the window
    assert pytest.approx(items["ctr_1d"][1]) == 1 / 20
    assert sorted(read_events(feast_paths, "retail")["event_id"]) == ["e1", "e2"]
    assert sorted(read_events(feast_paths, "banking")["event_id"]) == ["e3", "e4", "e5", "e6"]
    account = online.user_features("b_u7").values
    assert not account.get("recent_item_ids") and account["last_event_ts"] == 0
    assert (account["salary_credit"], account["salary_change_ts"], account["large_transfer_ts"]) == (4600.0, t0 + 5, [t0 + 6])
    assert online.item_features(["b_mcc_travel"]).columns["popularity_1d"] in ([None], [0], [])
    codes = sorted(r["reason"]["code"] for r in read_dead_letters(feast_paths, "streaming"))
    assert codes == ["duplicate_event_id", "malformed_json"]
