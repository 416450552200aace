"""The Spark batch sub-app: lake compaction, batch features, training sets.

Each command runs the job's ``main`` (the same entry point ``spark-submit spark_jobs/<job>.py`` uses)
in this process on ``local[*]`` unless ``--master`` says otherwise; every step prints its rows and seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Spark batch jobs: compact the event lake, compute the feature views, build training sets.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data root (default: $RECSYS_DATA_DIR or ./data).", file_okay=False)
]
Master = Annotated[str | None, typer.Option("--master", help="Spark master URL (default: local[*]).")]
Day = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="A date, YYYY-MM-DD.")]


def _common(data_dir: Path | None, master: str | None) -> list[str]:
    return [*(["--data-dir", str(data_dir)] if data_dir else []), *(["--master", master] if master else [])]


def _run(main: Callable[[list[str] | None], int], argv: list[str]) -> None:
    code = main(argv)
    if code:
        raise typer.Exit(code)


@app.command("compact")
def compact_command(
    date: Day,
    end: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last date of a range starting at --date.")
    ] = None,
    data_dir: DataDir = None,
    master: Master = None,
) -> None:
    """Validate, deduplicate and compact the raw events of a date (or range); rejects go to the dead-letter store."""
    from spark_jobs.compact import main

    argv = ["--date", f"{date:%Y-%m-%d}", *(["--end", f"{end:%Y-%m-%d}"] if end else [])]
    _run(main, [*argv, *_common(data_dir, master)])


@app.command("features")
def features_command(
    date: Day,
    days: Annotated[
        int | None, typer.Option(min=1, help="The span: snapshot days ending at --date (default 1; backfill).")
    ] = None,
    daily_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Sparse snapshots over a long span: every day of the last N days up to --date, weekly back to a "
            "year, every 28 days beyond (default: every day of the span).",
        ),
    ] = None,
    snapshots: Annotated[
        str | None,
        typer.Option(help="Explicit snapshot days instead of --days: comma-separated YYYY-MM-DD (--date is always one)."),
    ] = None,
    data_dir: DataDir = None,
    master: Master = None,
) -> None:
    """Compute the batch feature views (Feast offline sources) for the snapshot days up to --date."""
    from spark_jobs.features import main

    argv = ["--date", f"{date:%Y-%m-%d}"]
    argv += ["--days", str(days)] if days is not None else []
    argv += ["--daily-days", str(daily_days)] if daily_days is not None else []
    argv += ["--snapshots", snapshots] if snapshots is not None else []
    _run(main, [*argv, *_common(data_dir, master)])


@app.command("training-sets")
def training_sets_command(
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First day of the window.")],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Last day of the window.")],
    domain: Annotated[
        list[str] | None, typer.Option(help="Domain to build (repeatable; default: every domain in the lake).")
    ] = None,
    data_dir: DataDir = None,
    master: Master = None,
) -> None:
    """Build point-in-time correct ranking and retrieval training sets per domain for a date window."""
    from spark_jobs.training_sets import main

    argv = ["--start", f"{start:%Y-%m-%d}", "--end", f"{end:%Y-%m-%d}"]
    argv += [arg for d in domain or [] for arg in ("--domain", d)]
    _run(main, [*argv, *_common(data_dir, master)])
