"""Plumbing shared by every job's ``main``: arguments, logical dates and progress lines."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from common.errors import EXIT_DATA_ERROR, DataError
from common.paths import DataPaths


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` -> date (an argparse ``type``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(day: date) -> datetime:
    """The instant a day ends (midnight UTC of the next day): a day's values are true from then on."""
    return day_start(day) + timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last``, both included."""
    if last < first:
        raise ValueError(f"end date {last} is before start date {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job shares (``--master``, ``--data-dir``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--master", default=None,
        help="Spark master URL (default: local[*], or the --master given to spark-submit)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="data root (default: $RECSYS_DATA_DIR or ./data)",
    )
    return parser


def data_paths(args: argparse.Namespace) -> DataPaths:
    return DataPaths(args.data_dir.resolve()) if args.data_dir else DataPaths.default()


@contextmanager
def step(job: str, name: str) -> Iterator[dict[str, object]]:
    """Time one step and print ``[job] name: k=v ... (s)``; the caller fills the yielded dict."""
    counts: dict[str, object] = {}
    started = time.perf_counter()
    yield counts
    details = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"[{job}] {name}: {details} ({time.perf_counter() - started:.1f} s)", flush=True)


def run_main(main: Callable[[], int], job: str) -> int:
    """Run a job's ``main``; a :class:`common.errors.DataError` (retrying cannot fix it) prints one line
    and exits with :data:`common.errors.EXIT_DATA_ERROR` instead of a traceback's exit code 1."""
    try:
        return main()
    except DataError as err:
        print(f"[{job}] data error (not retryable): {err}", file=sys.stderr, flush=True)
        return EXIT_DATA_ERROR
