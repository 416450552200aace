"""Lake compaction: validate, deduplicate and rewrite the raw events of a date (or a date range).

::

    lake/events/domain=*/date=<d>  --validate_event-->  invalid: dead_letter/compaction/date=<d>/compaction.jsonl
                                   --dedupe event_id-->  valid:   lake/compacted/domain=*/date=<d>

Every row is validated by :func:`common.schemas.validate_event` itself (inside ``mapInArrow``), so the
batch lake obeys exactly the rules of every other entry point. Valid rows are written in their
normalised form. The validator's clock is the event's ``ingested_at`` when present, else the end of its
partition day, so re-running a date gives the same result. Duplicates of an ``event_id`` (retried
deliveries, which carry the same timestamp and so land in the same date partition) are not errors:
the earliest is kept and the rest are counted. Compacted partitions are replaced with dynamic partition
overwrite and the dead-letter file of a date is rewritten, so the job is idempotent per date.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from shutil import rmtree
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import TimestampType

from common.deadletter import DeadLetterWriter
from common.lake_schemas import EVENT_ARROW_SCHEMA
from common.paths import DataPaths
from common.schemas import Rejection, validate_event
from spark_jobs.jobs import data_paths, day_end, days_between, job_parser, parse_date, run_main, step
from spark_jobs.lake_io import DATE, EVENT_SCHEMA, LAKE_EVENT_SCHEMA, partition_dirs, read_raw_events
from spark_jobs.session import job_session

JOB = "compact"
DEAD_LETTER_SOURCE = "compaction"
REJECT_CODE, REJECT_FIELD, REJECT_DETAIL = "reject_code", "reject_field", "reject_detail"
VALIDATED_ARROW_SCHEMA = pa.schema(
    [*EVENT_ARROW_SCHEMA, *(pa.field(c, pa.string()) for c in (DATE, REJECT_CODE, REJECT_FIELD, REJECT_DETAIL))]
)
VALIDATED_SCHEMA = from_arrow_schema(VALIDATED_ARROW_SCHEMA)
_EVENT_COLUMNS = EVENT_SCHEMA.fieldNames()


def _validate_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for record in batch.to_pylist():
            partition_date = record.pop(DATE)
            clock = record.get("ingested_at") or day_end(date.fromisoformat(partition_date))
            event, rejection = validate_event(record, now=clock)
            out = record if event is None else event.model_dump()
            reason = rejection.as_dict() if rejection else {"code": None, "field": None, "detail": None}
            rows.append(
                {**out, DATE: partition_date, REJECT_CODE: reason["code"], REJECT_FIELD: reason["field"],
                 REJECT_DETAIL: reason["detail"]}
            )
        yield pa.RecordBatch.from_pylist(rows, schema=VALIDATED_ARROW_SCHEMA)


def validate(raw: DataFrame) -> DataFrame:
    """Raw lake rows -> the same rows plus ``reject_code/field/detail`` (all null for a valid event)."""
    return raw.select(*LAKE_EVENT_SCHEMA.fieldNames()).mapInArrow(_validate_batches, VALIDATED_SCHEMA)


def valid_events(validated: DataFrame) -> DataFrame:
    return validated.where(F.col(REJECT_CODE).isNull()).select(*LAKE_EVENT_SCHEMA.fieldNames())


def invalid_events(validated: DataFrame) -> DataFrame:
    return validated.where(F.col(REJECT_CODE).isNotNull())


def deduplicate(events: DataFrame) -> DataFrame:
    """One row per ``event_id``: the earliest (timestamp, then ingestion; a total order breaks ties)."""
    order = Window.partitionBy("event_id").orderBy(
        F.col("timestamp").asc(), F.col("ingested_at").asc_nulls_last(), F.to_json(F.struct(*events.columns))
    )
    return events.withColumn("_n", F.row_number().over(order)).where(F.col("_n") == 1).drop("_n")


@dataclass
class CompactionReport:
    rows_in: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason code
    written: dict[tuple[str, str], int] = field(default_factory=dict)  # by (domain, date)


class _DateDeadLetters(DeadLetterWriter):
    """The shared dead-letter line format, filed under the events' partition date (not today's) so a
    re-run replaces its own file instead of appending to a new one."""

    def __init__(self, paths: DataPaths, partition_date: str) -> None:
        super().__init__(paths, DEAD_LETTER_SOURCE, name=DEAD_LETTER_SOURCE)
        self.partition_date = partition_date

    @property
    def path(self) -> Path:
        return self.paths.dead_letter(self.source) / f"{DATE}={self.partition_date}" / f"{self.name}.jsonl"

    def file_for(self, when: datetime) -> Path:
        return self.path


# ISO-8601 with microseconds and the zone as an offset pattern ("Z" for UTC), as the event contract writes
# times; dead letters keep that text so a record can be replayed as it arrived. The three trailing letters
# are Spark's zone-offset pattern (offset with a colon, "Z" at zero).
ISO_8601_MICROS = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS" + "X" * 3


def _write_dead_letters(rejected: DataFrame, paths: DataPaths, dates: list[date], chunk: int = 1000) -> None:
    timestamps = [f.name for f in rejected.schema.fields if isinstance(f.dataType, TimestampType)]
    as_text = rejected.select(
        *(
            F.date_format(c, ISO_8601_MICROS).alias(c) if c in timestamps else F.col(c)
            for c in rejected.columns
        )
    ).orderBy(DATE, "event_id")
    writers = {d.isoformat(): _DateDeadLetters(paths, d.isoformat()) for d in dates}
    for writer in writers.values():
        writer.path.unlink(missing_ok=True)
    pending: dict[str, list[tuple[dict[str, Any], Rejection]]] = {d: [] for d in writers}
    for row in as_text.toLocalIterator():
        values = row.asDict()
        record = {k: values[k] for k in _EVENT_COLUMNS if values[k] is not None}
        rejection = Rejection(values[REJECT_CODE], values[REJECT_FIELD], values[REJECT_DETAIL])
        batch = pending[values[DATE]]
        batch.append((record, rejection))
        if len(batch) >= chunk:
            writers[values[DATE]].write_many(batch)
            batch.clear()
    for partition_date, batch in pending.items():
        writers[partition_date].write_many(batch)


def compact(spark: SparkSession, paths: DataPaths, first: date, last: date) -> CompactionReport:
    """Compact the raw partitions of ``first``..``last``; returns the counts."""
    dates = days_between(first, last)
    report = CompactionReport()
    with step(JOB, f"validate {first}..{last}") as out:
        validated = validate(read_raw_events(spark, paths, dates)).persist()
        by_code = validated.groupBy(REJECT_CODE).count().collect()
        report.rows_in = sum(r["count"] for r in by_code)
        report.rejected = {r[REJECT_CODE]: r["count"] for r in by_code if r[REJECT_CODE] is not None}
        out.update(rows_in=report.rows_in, rejected=sum(report.rejected.values()))
    with step(JOB, "dead-letter") as out:
        _write_dead_letters(invalid_events(validated), paths, dates)
        out.update(by_reason=report.rejected or "{}")
    with step(JOB, "deduplicate + write") as out:
        valid = valid_events(validated)
        per_partition = valid.groupBy("domain", DATE).agg(
            F.count("*").alias("rows"), F.countDistinct("event_id").alias("distinct")
        ).collect()
        report.written = {(r["domain"], r[DATE]): r["distinct"] for r in per_partition}
        report.duplicates = sum(r["rows"] - r["distinct"] for r in per_partition)
        deduplicate(valid).write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(
            "domain", DATE
        ).parquet(str(paths.compacted_events))
        _drop_emptied_partitions(paths, dates, report.written)
        out.update(duplicates=report.duplicates, rows_out=sum(report.written.values()), partitions=len(report.written))
    validated.unpersist()
    return report


def _drop_emptied_partitions(paths: DataPaths, dates: list[date], written: dict[tuple[str, str], int]) -> None:
    """A raw partition whose every row was rejected must not leave an older compacted copy behind."""
    for raw_dir in partition_dirs(paths.events, dates):
        domain_part, date_part = raw_dir.parent.name, raw_dir.name
        key = (domain_part.split("=", 1)[1], date_part.split("=", 1)[1])
        stale = paths.compacted_events / domain_part / date_part
        if key not in written and stale.exists():
            rmtree(stale)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Validate, deduplicate and compact the raw events of a date (or a date range).")
    parser.add_argument("--date", type=parse_date, required=True, help="logical date (YYYY-MM-DD)")
    parser.add_argument("--end", type=parse_date, default=None, help="last date of a range starting at --date")
    args = parser.parse_args(argv)
    paths = data_paths(args)
    first, last = args.date.isoformat(), (args.end or args.date).isoformat()
    inputs = [day for day in paths.events.glob("domain=*/date=*") if first <= day.name.split("=", 1)[1] <= last]
    with job_session("recsys-compact", args.master, inputs) as spark:
        report = compact(spark, paths, args.date, args.end or args.date)
    print(
        f"[{JOB}] done: {report.rows_in} rows in, {sum(report.written.values())} written, "
        f"{report.duplicates} duplicates dropped, {sum(report.rejected.values())} dead-lettered {report.rejected}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "compact"))
