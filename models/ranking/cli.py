"""``recsys ranker ...``: train and export the DCN-v2 ranker, check an export's parity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from models.ranking.config import RankerConfig

app = typer.Typer(help="DCN-v2 ranker: train with position-bias correction, export, check exports.",
                  no_args_is_help=True, add_completion=False)


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@app.command()
def train(
    train_path: Annotated[Path, typer.Option("--train", help="training impressions (Parquet file or directory)")],
    out: Annotated[Path, typer.Option(help="export directory to create (saved_model/ and fast/)")],
    valid_path: Annotated[Path | None, typer.Option("--valid", help="validation impressions; "
                                                    "default: a hold-out of --train")] = None,
    valid_fraction: Annotated[float, typer.Option(help="hold-out share when --valid is absent")] = 0.1,
    structure: Annotated[str, typer.Option(help="stacked, parallel or auto (train both, keep the better)")] = "auto",
    numeric: Annotated[str | None, typer.Option(help="comma-separated numeric features (default: config)")] = None,
    categorical: Annotated[str | None, typer.Option(help="comma-separated categorical features")] = None,
    epochs: Annotated[int, typer.Option(help="maximum epochs (early stopping on validation AUC)")] = 10,
    position_correction: Annotated[bool, typer.Option(help="train with the position shallow tower")] = True,
    conversion_head: Annotated[bool, typer.Option(help="add the conversion head (needs `converted`)")] = False,
    tensorboard: Annotated[Path | None, typer.Option(help="TensorBoard log directory")] = None,
) -> None:
    """Train the ranker on a training set and write both exports."""
    from models.ranking.data import holdout_split
    from models.ranking.export import export_ranker
    from models.ranking.train import train_ranker

    overrides = {k: v for k, v in (("numeric", _names(numeric)), ("categorical", _names(categorical))) if v}
    if "numeric" in overrides:
        overrides["log1p"] = [n for n in RankerConfig().log1p if n in overrides["numeric"]]
    config = RankerConfig(structure=None if structure == "auto" else structure, epochs=epochs,
                          position_correction=position_correction, conversion_head=conversion_head, **overrides)
    frame = pd.read_parquet(train_path)
    if valid_path is None:
        frame, valid = holdout_split(frame, valid_fraction, seed=config.seed)
    else:
        valid = pd.read_parquet(valid_path)
    typer.echo(f"[ranker] {len(frame)} training rows, {len(valid)} validation rows")
    trained = train_ranker(frame, valid, config, tensorboard_dir=tensorboard)
    paths = export_ranker(trained, out)
    typer.echo(json.dumps({"structure": trained.config.structure, "metrics": trained.metrics,
                           "comparison": trained.comparison, "exports": {k: str(v) for k, v in paths.items()}},
                          indent=1))


@app.command()
def check(
    export_dir: Annotated[Path, typer.Option("--export", help="a directory written by `ranker train`")],
    data: Annotated[Path, typer.Option(help="candidates to score (Parquet with the ranker's features)")],
    rows: Annotated[int, typer.Option(help="candidates scored (the first N rows)")] = 500,
) -> None:
    """Load both exports, score the same candidates, print their parity (exit 1 if they disagree)."""
    from models.ranking.data import feature_arrays
    from models.ranking.export import load_scorer
    from models.ranking.scoring import compare_scores

    reference, fast = load_scorer(export_dir, "saved_model"), load_scorer(export_dir, "fast")
    features = feature_arrays(pd.read_parquet(data).head(rows), reference.config)
    parity = compare_scores(reference.score(features), fast.score(features))
    typer.echo(json.dumps(parity))
    if not parity["agree"]:
        raise typer.Exit(1)
