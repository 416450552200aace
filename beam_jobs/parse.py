"""Parse and validate raw lines with the shared schema; bad ones become dead-letter records.

``ParseEvents`` emits ``StreamEvent`` on its main output and ``Rejected`` on the ``rejected`` tag,
counting every rejection with ``Metrics.counter`` (``dead_letters`` and ``dead_letter.<code>``).
Events of a read-only domain (the MovieLens benchmark) are refused like serving refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs.records import METRICS_NAMESPACE, Rejected, SourceLine, StreamEvent
from common.domains import domains
from common.schemas import Reason, Rejection, parse_event_line

REJECTED = "rejected"


def count_rejection(code: str) -> None:
    """Count one dead letter, in total and per reason code."""
    Metrics.counter(METRICS_NAMESPACE, "dead_letters").inc()
    Metrics.counter(METRICS_NAMESPACE, f"dead_letter.{code}").inc()


class ParseEvents(beam.DoFn):
    """``SourceLine`` -> ``StreamEvent`` | tagged ``Rejected``; blank lines are counted and skipped."""

    def __init__(self) -> None:
        self.lines = Metrics.counter(METRICS_NAMESPACE, "lines")
        self.blank = Metrics.counter(METRICS_NAMESPACE, "blank_lines")
        self.valid = Metrics.counter(METRICS_NAMESPACE, "valid_events")

    def process(self, line: SourceLine) -> Iterator[StreamEvent | beam.pvalue.TaggedOutput]:
        self.lines.inc()
        if not line.data.strip():
            self.blank.inc()
            return
        event, rejection = parse_event_line(line.data)
        if event is not None and domains()[event.domain].read_only:
            event, rejection = None, Rejection(
                Reason.DOMAIN_READ_ONLY, "domain", f"domain {event.domain!r} takes no live events"
            )
        if event is None:
            assert rejection is not None
            count_rejection(rejection.code)
            yield beam.pvalue.TaggedOutput(REJECTED, Rejected(line.data, rejection))
            return
        self.valid.inc()
        arrived = event.ingested_at.timestamp() if event.ingested_at is not None else line.arrived_at
        yield StreamEvent(event, line.source, line.offset, arrived)
