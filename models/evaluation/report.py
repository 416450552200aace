"""Write an evaluation table (``run_baselines`` output) as Markdown + CSV + PNG plots.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no display needed):

- ``accuracy.png``: Recall@K and NDCG@K per model, one panel per slice;
- ``coverage_novelty.png``: catalog coverage vs novelty per model (slice ``all``);
- ``popularity_bias.png``: average recommendation popularity vs Gini of exposure (slice ``all``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TIMING = ("tune_s", "fit_s", "recommend_s")


def metric_ks(table: pd.DataFrame) -> list[int]:
    """The cut-offs K present in the table's ``recall@K`` columns, ascending."""
    return sorted(int(c.split("@")[1]) for c in table.columns if re.fullmatch(r"recall@\d+", c))


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; floats rounded to ``digits``."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _headline_columns(ks: Sequence[int]) -> list[str]:
    small, large = ks[0], ks[-1]
    return [f"recall@{small}", f"ndcg@{small}", f"recall@{large}"]


def render_markdown(table: pd.DataFrame, title: str) -> str:
    ks = metric_ks(table)
    attrs = table.attrs
    lines = [f"# {title}", ""]
    if attrs:
        lines += [
            f"Domain `{attrs.get('domain')}`; positives: {attrs.get('positives')}; train < {attrs.get('test_start')} "
            f"<= test <= {attrs.get('test_end')}; hyperparameters tuned on [{attrs.get('validation_start')}, "
            f"{attrs.get('test_start')}). Full ranking over the whole catalog.",
            "",
        ]
    every = table[table["slice"] == "all"]
    lines += ["## Headline (all test users)", "",
              markdown_table(every[["model", "users", *_headline_columns(ks), *TIMING]]), ""]
    metric_columns = [c for c in table.columns if "@" in c]
    for name, part in table.groupby("slice", sort=False):
        lines += [f"## Slice `{name}`", "", markdown_table(part[["model", "users", *metric_columns]]), ""]
    lines += ["## Chosen hyperparameters", "", markdown_table(every[["model", "params"]].drop_duplicates()), ""]
    return "\n".join(lines)


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _accuracy_plot(table: pd.DataFrame, path: Path) -> None:
    ks = metric_ks(table)
    metrics = [f"{name}@{k}" for k in ks for name in ("recall", "ndcg")]
    slices = list(dict.fromkeys(table["slice"]))
    figure = _figure(4.5 * len(slices), 4.0)
    axes = figure.subplots(1, len(slices), squeeze=False)[0]
    for ax, name in zip(axes, slices, strict=True):
        part = table[table["slice"] == name].set_index("model")[metrics]
        part.plot.bar(ax=ax, rot=30, legend=ax is axes[0])
        ax.set_title(f"slice: {name}")
        ax.set_xlabel("")
    figure.savefig(path, dpi=110)


def _scatter(table: pd.DataFrame, x: str, y: str, path: Path) -> None:
    every = table[table["slice"] == "all"]
    figure = _figure(5.5, 4.5)
    ax = figure.subplots()
    ax.scatter(every[x], every[y])
    for _, row in every.iterrows():
        ax.annotate(row["model"], (row[x], row[y]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x} (all test users)")
    figure.savefig(path, dpi=110)


def write_report(table: pd.DataFrame, out_dir: Path, title: str = "Offline evaluation") -> list[Path]:
    """Write ``results.md``, ``results.csv`` and the plots into ``out_dir``; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = metric_ks(table)
    written = [out_dir / "results.md", out_dir / "results.csv", out_dir / "accuracy.png",
               out_dir / "coverage_novelty.png", out_dir / "popularity_bias.png"]
    written[0].write_text(render_markdown(table, title))
    table.to_csv(written[1], index=False)
    _accuracy_plot(table, written[2])
    _scatter(table, f"coverage@{ks[-1]}", f"novelty@{ks[0]}", written[3])
    _scatter(table, f"arp@{ks[0]}", f"gini@{ks[-1]}", written[4])
    return written
