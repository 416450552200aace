"""``recsys sim``: generate the synthetic world."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from common.paths import DataPaths
from simulation.generate import GenerationSummary, generate
from simulation.profiles import PROFILES, get_profile

app = typer.Typer(help="The synthetic world: users with hidden tastes, catalogs, event logs, ground truth.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def sim() -> None:
    """The synthetic world: users with hidden tastes, catalogs, event logs, ground truth."""


def _print_summary(summary: GenerationSummary, paths: DataPaths) -> None:
    typer.echo(f"profile={summary.profile} seed={summary.seed} days={summary.start_date}..{summary.end_date} "
               f"(last day in {paths.incoming()}) data={paths.root}")
    for name, d in summary.domains.items():
        typer.echo(f"  {name}: {d.users:,} users ({d.new_users:,} new), {d.items:,} items ({d.new_items:,} new, "
                   f"{d.out_of_stock_items:,} out of stock), {d.events:,} events "
                   f"[lake {d.lake_events:,} + incoming {d.incoming_events:,}] in {d.seconds:.1f}s")
        typer.echo("    " + ", ".join(f"{k}={v:,}" for k, v in d.events_by_type.items()))
    typer.echo(f"done in {summary.seconds:.1f}s")


@app.command("generate")
def generate_command(
    profile: str = typer.Option("demo", help=f"size profile: {', '.join(PROFILES)}, or any s<N>k / s<N>m "
                                             "(N thousand / million users)"),
    seed: int = typer.Option(42, help="random seed; same seed + profile + start date = identical output"),
    data_dir: Path | None = typer.Option(None, help="data root (default: $RECSYS_DATA_DIR or ./data)"),
    start_date: datetime | None = typer.Option(None, formats=["%Y-%m-%d"],
                                               help="first simulated day (default: the profile's fixed date)"),
    domain: list[str] = typer.Option(["retail", "banking"], help="domain(s) to generate (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Generate catalogs, users, event logs (lake + today's incoming JSONL) and the hidden truth."""
    try:
        get_profile(profile)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--profile") from None
    paths = DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()
    start: date | None = start_date.date() if start_date else None
    summary = generate(profile, seed, paths, start_date=start, domains=tuple(domain), progress=not quiet)
    _print_summary(summary, paths)
