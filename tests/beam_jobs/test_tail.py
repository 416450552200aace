"""The file tailer: complete lines only, offsets, budgets, replaced files; ReadRanges in a pipeline."""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.checkpoint import ByteRange, Offset
from beam_jobs.records import SourceLine
from beam_jobs.tail import ReadRanges, plan_ranges


def _bounds(ranges: list[ByteRange]) -> list[tuple[str, int, int]]:
    return [(r.source, r.start, r.end) for r in ranges]


def test_only_complete_lines_are_planned_until_settled(data_paths) -> None:
    incoming = data_paths.incoming()
    path = incoming / "retail" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"one\ntwo\nthr")
    (first,) = plan_ranges(incoming, {}, 1 << 20, settle_seconds=60)
    assert _bounds([first]) == [("retail/a.jsonl", 0, 8)]
    offsets = {first.source: Offset(first.inode, first.end, first.head)}
    assert plan_ranges(incoming, offsets, 1 << 20, settle_seconds=60) == []
    assert _bounds(plan_ranges(incoming, offsets, 1 << 20, settle_seconds=None)) == [("retail/a.jsonl", 8, 11)]
    with path.open("ab") as fh:
        fh.write(b"ee\nfour\n")
    assert _bounds(plan_ranges(incoming, offsets, 1 << 20, settle_seconds=60)) == [("retail/a.jsonl", 8, 19)]


def test_budget_and_replaced_files(data_paths) -> None:
    incoming = data_paths.incoming()
    (incoming / "retail").mkdir(parents=True)
    (incoming / "retail" / "a.jsonl").write_bytes(b"a" * 30 + b"\n" + b"b" * 30 + b"\n")
    (incoming / "banking").mkdir(parents=True)
    (incoming / "banking" / "b.jsonl").write_bytes(b"c\n")
    # a spent budget leaves the next file for the next batch; a line longer than what is left is taken whole
    assert _bounds(plan_ranges(incoming, {}, 2, None)) == [("banking/b.jsonl", 0, 2)]
    assert _bounds(plan_ranges(incoming, {}, 10, None)) == [("banking/b.jsonl", 0, 2), ("retail/a.jsonl", 0, 31)]
    assert _bounds(plan_ranges(incoming, {}, 40, None)) == [("banking/b.jsonl", 0, 2), ("retail/a.jsonl", 0, 31)]
    ranges = plan_ranges(incoming, {}, 1 << 20, None)
    offsets = {r.source: Offset(r.inode, r.end, r.head) for r in ranges}
    replacement = incoming / "retail" / "a.tmp"
    replacement.write_bytes(b"new\n")
    os.replace(replacement, incoming / "retail" / "a.jsonl")  # a regenerated file: new inode, read again
    assert _bounds(plan_ranges(incoming, offsets, 1 << 20, None)) == [("retail/a.jsonl", 0, 4)]


def test_read_ranges_yields_each_line_with_its_offset(data_paths, fnapi) -> None:
    incoming = data_paths.incoming()
    path = incoming / "retail" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"skip\nab\n\ncd\r\nef")
    inode = path.stat().st_ino
    ranges = [ByteRange("retail/a.jsonl", inode, 5, 17, 42.0), ByteRange("retail/gone.jsonl", 1, 0, 9, 1.0)]
    with BeamTestPipeline(runner=fnapi()) as p:
        lines = p | beam.Create(ranges) | beam.ParDo(ReadRanges(str(incoming)))
        assert_that(lines, equal_to([
            SourceLine("retail/a.jsonl", 5, b"ab", 42.0),
            SourceLine("retail/a.jsonl", 8, b"", 42.0),
            SourceLine("retail/a.jsonl", 9, b"cd", 42.0),
            SourceLine("retail/a.jsonl", 13, b"ef", 42.0),
        ]))
