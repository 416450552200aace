"""``recsys retrieval``: train and export the retrieval bundle, query a bundle."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import typer

app = typer.Typer(
    name="retrieval",
    help="Candidate generation: two-tower, content tower, popularity, ScaNN indexes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def train(
    interactions: Path = typer.Option(..., help="Parquet: user_id, item_id, timestamp, event_type[, weight]."),
    catalog: Path = typer.Option(..., help="Parquet catalog (the catalog contract)."),
    out: Path = typer.Option(..., help="Bundle directory to write (e.g. a release staging dir)."),
    domain: str | None = typer.Option(None, help="Domain whose positive_events weight the events (when no weight column)."),
    user_features: Path | None = typer.Option(None, help="Parquet: user_id + profile columns."),
    segment_column: str | None = typer.Option(None, help="Profile column that defines popularity segments."),
    as_of: datetime | None = typer.Option(None, help="End of the popularity window (default: last interaction)."),
    epochs: int = typer.Option(5, help="Epochs for both towers."),
    logs: Path | None = typer.Option(None, help="TensorBoard log directory."),
) -> None:
    """Train the two-tower and content towers, build popularity and both ScaNN indexes, export the bundle."""
    from models.retrieval.data import implicit_interactions
    from models.retrieval.pipeline import RetrievalSettings, build_retrieval_bundle

    frame = pd.read_parquet(interactions)
    if "weight" not in frame.columns:
        if domain is None:
            raise typer.BadParameter("the interactions have no weight column: pass --domain", param_hint="--domain")
        frame = implicit_interactions(frame, domain)
    defaults = RetrievalSettings()
    settings = RetrievalSettings(
        two_tower=replace(defaults.two_tower, epochs=epochs),
        content=replace(defaults.content, epochs=epochs),
        segment_column=segment_column,
    )
    profiles = pd.read_parquet(user_features) if user_features else None
    typer.echo(f"training on {len(frame):,} interactions ...")
    result = build_retrieval_bundle(frame, pd.read_parquet(catalog), out, profiles, as_of, settings, logs)
    summary = {k: result[k] for k in ("collaborative", "content", "timings")}
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"bundle written to {out}")


@app.command()
def query(
    bundle: Path = typer.Option(..., help="Bundle directory written by `train`."),
    user_id: str = typer.Option(..., help="User id (unseen ids are fine)."),
    history: str = typer.Option("", help="Recent item ids, newest first, comma-separated."),
    segment: str | None = typer.Option(None, help="Popularity segment (default: global)."),
    k: int = typer.Option(10, help="Candidates per retriever."),
) -> None:
    """Print each retriever's candidates for one user, with the latency of each call."""
    from models.retrieval.export import load_retrievers

    retrievers = load_retrievers(bundle)
    items = [h for h in history.split(",") if h]
    calls = {
        "collaborative": lambda: retrievers.collaborative(user_id, None, items, k),
        "content": lambda: retrievers.content(items, None, k),
        "popular": lambda: retrievers.popular(segment, k),
    }
    for name, call in calls.items():
        call()  # warm-up: the first call of a concrete function pays its set-up
        start = time.perf_counter()
        ids, scores = call()
        elapsed = (time.perf_counter() - start) * 1e3
        pairs = ", ".join(f"{i}:{s:.3f}" for i, s in zip(ids, scores, strict=True))
        typer.echo(f"{name} ({elapsed:.2f} ms): {pairs}")
