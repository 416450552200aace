"""Feedback-loop health: how wide the served slates stay, day after day, under a serving variant.

Per domain and simulated day, over the slates of the full-pipeline arm(s) (every slate when no
experiment is configured): catalog coverage, novelty and intra-list diversity
(:func:`experiments.slates.slate_metrics`), and long-tail exposure -- the share of impressions on
items outside the head, the most popular :data:`HEAD_SHARE` of the catalog by the number of users who
interacted with them before the loop. Popularity (for novelty and the head) is the reference
fixed before the loop, so the variants are measured on the same scale.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from common.lake import read_catalog, read_events
from common.paths import DataPaths
from experiments.assignment import experiment_for
from experiments.slates import SlateReference, slate_metrics
from loop.ab import impressions_with_clicks

HEAD_SHARE = 0.2
HEALTH_METRICS = ("coverage", "novelty", "long_tail_share", "intra_list_diversity")
LEGACY_VARIANT = "legacy_segment"


def reference_before(paths: DataPaths, domain: str, first_day: date) -> SlateReference:
    """Catalog taxonomy and the popularity (distinct users with a positive event) before ``first_day``."""
    events = read_events(paths, domain, ["user_id", "item_id", "event_type", "timestamp"])
    before = events[(pd.to_datetime(events["timestamp"], utc=True) < pd.Timestamp(first_day, tz="UTC"))
                    & events["event_type"].isin(list(domain_config(domain).positive_events))]
    counts = before.groupby("item_id")["user_id"].nunique().to_dict()
    catalog = read_catalog(paths, domain)
    return SlateReference.build(dict(zip(catalog["item_id"], catalog["category"], strict=True)), counts,
                                int(before["user_id"].nunique()))


def pipeline_arms(domain: str, arms: list[str]) -> list[str]:
    """The arms that serve the platform's pipeline (not the legacy recommender); every arm when the
    service ran no experiment (one arm) or none is configured."""
    experiment = experiment_for(domain)
    if experiment is None or len(arms) < 2:
        return arms
    return [a for a in arms if a in experiment.arms and experiment.arms[a].variant != LEGACY_VARIANT]


def long_tail_share(item_ids: np.ndarray, reference: SlateReference) -> float:
    """Share of ``item_ids`` (impressions) outside the head of the catalog."""
    if len(item_ids) == 0:
        return float("nan")
    head_size = max(1, int(round(HEAD_SHARE * reference.n_catalog)))
    head = reference.popular[reference.popular < reference.n_catalog][:head_size]
    return float(1.0 - np.isin(reference.rows_of(np.asarray(item_ids)), head).mean())


def daily_health(domain: str, events: pd.DataFrame, reference: SlateReference, variant: str) -> pd.DataFrame:
    """One row per day: ``variant, domain, day, slates`` and :data:`HEALTH_METRICS`."""
    shown = impressions_with_clicks(events)
    shown = shown[shown["arm"].isin(pipeline_arms(domain, sorted(shown["arm"].dropna().unique())))]
    rows = []
    for day, group in shown.groupby("day", sort=True):
        metrics = slate_metrics(group, reference)
        rows.append({"variant": variant, "domain": domain, "day": day, "slates": metrics["slates"],
                     "coverage": metrics["coverage"], "novelty": metrics["novelty"],
                     "long_tail_share": long_tail_share(group["item_id"].to_numpy(), reference),
                     "intra_list_diversity": metrics["intra_list_diversity"]})
    return pd.DataFrame(rows)


def health_table(frame: pd.DataFrame) -> str:
    """Markdown: per domain and day, each metric for every variant side by side."""
    variants = sorted(frame["variant"].unique())
    header = ["domain", "day", *(f"{m} ({v})" for m in HEALTH_METRICS for v in variants)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    wide = frame.pivot_table(index=["domain", "day"], columns="variant", values=list(HEALTH_METRICS))
    for (domain, day), row in wide.iterrows():
        cells = [f"{row[(m, v)]:.3f}" if (m, v) in row and np.isfinite(row[(m, v)]) else "n/a"
                 for m in HEALTH_METRICS for v in variants]
        lines.append("| " + " | ".join([domain, day, *cells]) + " |")
    return "\n".join(lines)


def plot_health(frame: pd.DataFrame, path: Path) -> Path:
    """A PNG: one row of panels per domain, one panel per metric, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = sorted(frame["domain"].unique())
    fig, axes = plt.subplots(len(domains), len(HEALTH_METRICS), figsize=(4 * len(HEALTH_METRICS), 3.2 * len(domains)),
                             squeeze=False)
    for r, domain in enumerate(domains):
        for c, metric in enumerate(HEALTH_METRICS):
            ax = axes[r][c]
            for variant, group in frame[frame["domain"] == domain].groupby("variant"):
                ax.plot(group["day"].str[5:], group[metric], marker="o", label=variant)
            ax.set_title(f"{domain}: {metric}", fontsize=10)
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
