"""``recsys models``: the nightly pipeline's pieces, each producing or using a versioned release.

``train-retrieval`` and ``train-ranker`` run the Spark launchers in this process (the same ``main`` that
spark-submit runs); ``check-indexes``, ``evaluate`` and ``finalize`` work on a staged release;
``build-release`` runs them all; ``report`` writes the offline evaluation report. Releases are never
promoted here (that is the Airflow gate's job).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from common.paths import REPO_ROOT, DataPaths

app = typer.Typer(help="Training launchers, release builder and offline evaluation of the models.",
                  no_args_is_help=True, add_completion=False)

Domain = Annotated[str, typer.Option(help="Domain (retail, banking).")]
Day = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Logical date: the training window ends with it.")]
Release = Annotated[str, typer.Option(help="Release version (staged; claimed if not staged yet).")]
Days = Annotated[int, typer.Option(min=1, help="Length of the training window in days.")]
DataDir = Annotated[Path | None, typer.Option(help="Data root (default: $RECSYS_DATA_DIR or ./data).")]
Master = Annotated[str | None, typer.Option(help="Spark master URL (default: local[*]).")]


def _paths(data_dir: Path | None) -> DataPaths:
    return DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()


def _launch(job: str, domain: str, date: datetime, release: str, days: int, data_dir: Path | None,
            master: str | None, epochs: int | None) -> None:
    from spark_jobs import train_ranker, train_retrieval

    main = train_retrieval.main if job == "retrieval" else train_ranker.main
    argv = ["--domain", domain, "--date", f"{date:%Y-%m-%d}", "--days", str(days), "--release", release,
            "--data-dir", str(_paths(data_dir).root), *(["--master", master] if master else []),
            *(["--epochs", str(epochs)] if epochs else [])]
    if main(argv):
        raise typer.Exit(1)


@app.command("train-retrieval")
def train_retrieval_command(domain: Domain, date: Day, release: Release, days: Days = 14, data_dir: DataDir = None,
                            master: Master = None, epochs: Annotated[int | None, typer.Option(help="Epochs (default: the models' own).")] = None) -> None:
    """Train the two-tower + content towers, popularity and both ScaNN indexes into a staged release."""
    _launch("retrieval", domain, date, release, days, data_dir, master, epochs)


@app.command("train-ranker")
def train_ranker_command(domain: Domain, date: Day, release: Release, days: Days = 14, data_dir: DataDir = None,
                         master: Master = None, epochs: Annotated[int | None, typer.Option(help="Epochs (default: the models' own).")] = None) -> None:
    """Train the DCN-v2 ranker (position-bias corrected) and its two exports into a staged release."""
    _launch("ranker", domain, date, release, days, data_dir, master, epochs)


@app.command("check-indexes")
def check_indexes_command(domain: Domain, release: Release, date: Day, data_dir: DataDir = None) -> None:
    """ScaNN recall@100 vs exact search of both indexes, on real users' queries (exit 1 below 0.95)."""
    from models.release import ReleaseCheckFailed, check_release_indexes

    try:
        figures = check_release_indexes(domain, release, date.date(), _paths(data_dir))
    except ReleaseCheckFailed as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps(figures, indent=1))


@app.command("evaluate")
def evaluate_command(domain: Domain, release: Release,
                     start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First held-out day.")],
                     end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Last held-out day.")],
                     data_dir: DataDir = None) -> None:
    """Offline metrics of a release on held-out days of the lake (written to its summary/evaluation.json)."""
    from models.evaluation.release_evaluation import evaluate_on_days

    typer.echo(json.dumps(evaluate_on_days(domain, release, start.date(), end.date(), _paths(data_dir)), indent=1))


@app.command("finalize")
def finalize_command(domain: Domain, release: Release, date: Day, days: Days = 14) -> None:
    """Checksum a staged release into its manifest (training window, metrics); not promoted."""
    from models.release import finalize_release, training_window

    manifest = finalize_release(domain, release, training_window(date.date(), days))
    typer.echo(json.dumps({"version": manifest.version, "metrics": manifest.metrics}, indent=1))


@app.command("build-release")
def build_release_command(domain: Domain, date: Day, days: Days = 14,
                          holdout_days: Annotated[int, typer.Option(min=1, help="Last days held out for evaluation.")] = 1,
                          release: Annotated[str | None, typer.Option(help="Version (default: UTC time).")] = None,
                          data_dir: DataDir = None, master: Master = None) -> None:
    """Stage, train retrieval, check indexes, train the ranker, evaluate on the held-out days, finalize."""
    from orchestration.build import build_release

    built = build_release(domain, date.date(), days, holdout_days, release, _paths(data_dir), master=master)
    typer.echo(json.dumps({"version": built.version, "training_window": built.manifest.training_window,
                           "metrics": built.manifest.metrics}, indent=1))


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Option(help="Report directory.")] = REPO_ROOT / "reports" / "offline",
    domain: Annotated[list[str], typer.Option(help="Domains (repeat; default: movielens, retail, banking).")] = [],  # noqa: B006
    data_dir: DataDir = None,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Tune the baselines on the validation window.")] = True,
) -> None:
    """End-to-end offline evaluation (retrievers, merged candidates, ranking, baselines) + position bias."""
    from experiments.offline_report import run_offline_evaluation
    from models.evaluation.pipeline import PipelineSettings

    run_offline_evaluation(out, _paths(data_dir), tuple(domain) or ("movielens", "retail", "banking"),
                           PipelineSettings(tune_baselines=tune), progress=typer.echo)
    typer.echo(f"report written to {out}")
