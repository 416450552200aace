"""``recsys airflow ...``: run the DAGs once through Airflow, check a day's data, print the environment."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from common.paths import DataPaths

app = typer.Typer(
    name="airflow",
    help="Airflow orchestration: the nightly retraining DAG, feature materialization, data-quality checks.",
    no_args_is_help=True,
    add_completion=False,
)

Home = Annotated[
    Path | None,
    typer.Option("--airflow-home", help="Airflow home with its SQLite DB (default: <data root>/airflow).",
                 file_okay=False),
]
Day = Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"], help="Logical date, YYYY-MM-DD.")]


def _home(home: Path | None) -> Path:
    return (home or DataPaths.default().root / "airflow").resolve()


@app.command()
def nightly(
    day: Day = None,
    airflow_home: Home = None,
    training_days: Annotated[str | None, typer.Option(
        help='Training window: a number of days, or "all" (default: settings).')] = None,
    compact_lookback_days: Annotated[int | None, typer.Option(min=1, help="Days re-compacted (default: settings).")] = None,
) -> None:
    """Run the nightly retraining DAG once (dag.test) for a day (default: the lake's newest day);
    prints every task's state and wall time, exits 1 unless the run succeeded."""
    from orchestration.runner import NightRefused, run_nightly

    if training_days is not None and training_days.strip().lower() != "all":
        if not training_days.strip().isdigit() or int(training_days) < 1:
            raise typer.BadParameter(f'--training-days: a positive number of days or "all", got {training_days!r}')
        training_days = int(training_days)  # type: ignore[assignment]
    conf = {k: v for k, v in (("training_days", training_days), ("compact_lookback_days", compact_lookback_days)) if v}
    typer.secho("==> nightly_retrain through Airflow (each task's log follows)", bold=True)
    try:
        report = run_nightly(day.date() if day else None, _home(airflow_home), conf or None)
    except (NightRefused, FileNotFoundError) as err:
        typer.secho(f"nightly_retrain not run: {err}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo(report.table())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def materialize(
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="End of the interval (UTC).")],
    airflow_home: Home = None,
) -> None:
    """Run the feature-materialization DAG once, for the interval ending at END."""
    from orchestration.airflow_env import configure

    configure(_home(airflow_home))
    from orchestration.runner import run_dag

    report = run_dag("feature_materialization", end.replace(tzinfo=end.tzinfo or UTC))
    typer.echo(report.table())
    if not report.ok:
        raise typer.Exit(1)


@app.command("check-quality")
def check_quality(
    domain: Annotated[str, typer.Option(help="Domain to check.")],
    day: Annotated[datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Day to check, YYYY-MM-DD.")],
) -> None:
    """Run the nightly data-quality checks on a compacted day without Airflow (exit 1 if one fails)."""
    from common.domains import domain as domain_config
    from orchestration.quality import check_domain
    from orchestration.settings import load_settings

    report = check_domain(DataPaths.default(), domain, date.fromisoformat(f"{day:%Y-%m-%d}"),
                          load_settings().quality(domain), domain_config(domain).positive_events)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def env(airflow_home: Home = None) -> None:
    """Print the environment of the local Airflow as shell exports: eval "$(recsys airflow env)"."""
    from orchestration.airflow_env import shell_exports

    typer.echo(shell_exports(_home(airflow_home)))
