"""The A/B metrics, their per-user comparison (driver side) and the job's output files.

One table of metric definitions (:data:`METRICS`) drives everything: the Spark aggregation per arm
and day, the per-user statistical comparison of each treatment arm with the control, the printed
table and the dashboard. A metric is one of

- ``ratio``: ``sum(numerator) / sum(denominator)`` over users (CTR, AOV), compared with the delta
  method (or a user-level bootstrap) because impressions and orders are clustered within users;
- ``proportion``: share of exposed users with ``numerator > 0`` (conversion, cross-sell), z-test;
- ``mean``: mean of ``numerator`` per exposed user (revenue per user), Welch (or bootstrap).

Outputs under ``data/experiments/<domain>/``: ``daily.parquet`` (one row per arm and day; a re-run
replaces the rows of its dates) and ``comparison.json`` (the window's comparison, SRM and MDEs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from common.domains import domain as domain_config
from common.paths import DataPaths
from experiments.stats import (
    Comparison,
    SRMResult,
    bootstrap_compare,
    compare_means,
    compare_proportions,
    compare_ratios,
    minimum_detectable_effect,
)

USER_COLUMNS = ("impressions", "clicks", "attributed_conversions", "orders", "revenue", "applications", "approvals")
DAILY_FILE, COMPARISON_FILE = "daily.parquet", "comparison.json"
CiMethod = Literal["delta", "bootstrap"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    kind: Literal["ratio", "proportion", "mean"]
    numerator: str
    denominator: str | None = None  # ratio metrics only
    requires: str | None = None  # an event type the domain must have for the metric to exist


METRICS = (
    MetricSpec("ctr", "CTR", "ratio", "clicks", "impressions"),
    MetricSpec("conversion_per_impression", "conversions / impression", "ratio", "attributed_conversions",
               "impressions"),
    MetricSpec("conversion_per_user", "conversion (buyers)", "proportion", "orders", requires="purchase"),
    MetricSpec("aov", "average order value", "ratio", "revenue", "orders", requires="purchase"),
    MetricSpec("revenue_per_user", "revenue / user", "mean", "revenue", requires="purchase"),
    MetricSpec("applied_per_user", "cross-sell applied", "proportion", "applications",
               requires="application_start"),
    MetricSpec("approved_per_user", "cross-sell conversion (approved)", "proportion", "approvals",
               requires="application_approved"),
)


def domain_metrics(domain: str) -> list[MetricSpec]:
    """The metrics that exist in ``domain`` (retail: purchases and AOV; banking: applications)."""
    event_types = set(domain_config(domain).event_types)
    return [m for m in METRICS if m.requires is None or m.requires in event_types]


def compare(users: pd.DataFrame, spec: MetricSpec, control: str, treatment: str, ci: CiMethod = "delta",
            alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Treatment vs control on one metric from the per-user totals (columns ``arm`` + :data:`USER_COLUMNS`)."""
    c, t = users[users["arm"] == control], users[users["arm"] == treatment]
    num_c, num_t = c[spec.numerator].to_numpy(np.float64), t[spec.numerator].to_numpy(np.float64)
    if spec.kind == "proportion":
        return compare_proportions(int((num_c > 0).sum()), len(c), int((num_t > 0).sum()), len(t), alpha, spec.name)
    if spec.kind == "ratio":
        assert spec.denominator is not None
        den_c, den_t = c[spec.denominator].to_numpy(np.float64), t[spec.denominator].to_numpy(np.float64)
        if ci == "bootstrap":
            return bootstrap_compare(num_c, num_t, den_c, den_t, n_boot, alpha, seed, spec.name)
        return compare_ratios(num_c, den_c, num_t, den_t, alpha, spec.name)
    if ci == "bootstrap":
        return bootstrap_compare(num_c, num_t, n_boot=n_boot, alpha=alpha, seed=seed, metric=spec.name)
    return compare_means(num_c, num_t, alpha, spec.name)


@dataclass
class ABReport:
    """The window's A/B analysis of one domain."""

    domain: str
    experiment: str | None
    control: str
    start: str
    end: str
    arms: dict[str, dict[str, float]]  # window values per arm: users, impressions, metrics, slate metrics
    srm: SRMResult
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    mixed_arm_users: int = 0  # users seen in more than one arm (excluded from the analysis)
    unassigned_impressions: int = 0  # impressions logged without an arm (outside the experiment)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "experiment": self.experiment, "control": self.control,
            "window": {"start": self.start, "end": self.end}, "arms": self.arms, "srm": self.srm.as_dict(),
            "comparisons": self.comparisons, "mixed_arm_users": self.mixed_arm_users,
            "unassigned_impressions": self.unassigned_impressions,
        }


def comparisons(users: pd.DataFrame, metrics: Sequence[MetricSpec], control: str, treatments: Sequence[str],
                ci: CiMethod = "delta", alpha: float = 0.05, power: float = 0.8, n_boot: int = 2000,
                seed: int = 0) -> list[dict[str, Any]]:
    """Every treatment arm vs the control on every metric, with its absolute and relative MDE."""
    out = []
    for treatment in treatments:
        for spec in metrics:
            result = compare(users, spec, control, treatment, ci, alpha, n_boot, seed)
            mde = minimum_detectable_effect(result.control_std, result.n_control, result.n_treatment, alpha, power)
            out.append({"arm": treatment, "label": spec.label, **result.as_dict(), "mde": mde,
                        "mde_relative": mde / result.control if result.control else float("nan")})
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def format_table(report: ABReport) -> str:
    """The comparison as a fixed-width text table (what the job prints)."""
    srm = report.srm
    lines = [
        f"A/B {report.domain} {report.experiment or '(no experiment configured)'} {report.start}..{report.end}",
        "users per arm: " + ", ".join(f"{a}={int(v.get('users', 0))}" for a, v in sorted(report.arms.items()))
        + f"  SRM chi2={srm.chi2:.3g} p={srm.p_value:.3g} {'MISMATCH' if srm.flagged else 'ok'}",
    ]
    header = f"{'metric':<28}{'arm':<12}{'control':>10}{'arm value':>11}{'lift':>9}  {'95% CI of lift':<20}{'p':>9}{'MDE rel':>9}"
    lines += [header, "-" * len(header)]
    for row in report.comparisons:
        low, high = row["lift_ci"]
        lift = row["lift"]
        lift_text = f"{lift:+.1%}" if np.isfinite(lift) else "n/a"
        ci_text = f"[{low:+.1%}, {high:+.1%}]" if np.isfinite(low) and np.isfinite(high) else "n/a"
        mde_text = f"{row['mde_relative']:.1%}" if np.isfinite(row["mde_relative"]) else "n/a"
        star = "*" if row["significant"] else " "
        lines.append(f"{row['metric']:<28}{row['arm']:<12}{_fmt(row['control']):>10}{_fmt(row['treatment']):>11}"
                     f"{lift_text:>9}  {ci_text:<20}{_fmt(row['p_value'], 3):>8}{star}{mde_text:>9}")
    lines.append("slates: " + "; ".join(
        f"{arm}: coverage={_fmt(v.get('coverage'), 3)} novelty={_fmt(v.get('novelty'), 3)} "
        f"serendipity={_fmt(v.get('serendipity'), 3)} ILD={_fmt(v.get('intra_list_diversity'), 3)}"
        for arm, v in sorted(report.arms.items())))
    return "\n".join(lines)


def write_outputs(report: ABReport, daily: pd.DataFrame, paths: DataPaths) -> Path:
    """Write ``comparison.json`` and merge ``daily`` into ``daily.parquet`` (rows of its dates replaced)."""
    out = paths.experiments(report.domain)
    out.mkdir(parents=True, exist_ok=True)
    daily_file = out / DAILY_FILE
    if daily_file.exists():
        previous = pd.read_parquet(daily_file)
        previous = previous[~previous["date"].isin(daily["date"].unique())]
        daily = pd.concat([previous, daily], ignore_index=True) if len(previous) else daily
    daily = daily.sort_values(["date", "arm"]).reset_index(drop=True)
    tmp = daily_file.with_suffix(".tmp")
    daily.to_parquet(tmp, index=False)
    tmp.replace(daily_file)
    (out / COMPARISON_FILE).write_bytes(
        orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return out


def read_outputs(paths: DataPaths) -> dict[str, tuple[pd.DataFrame, dict[str, Any] | None]]:
    """Every domain's ``daily.parquet`` and ``comparison.json`` (the dashboard's data)."""
    root = paths.root / "experiments"
    out: dict[str, tuple[pd.DataFrame, dict[str, Any] | None]] = {}
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []:
        daily_file, comparison_file = folder / DAILY_FILE, folder / COMPARISON_FILE
        if not daily_file.exists():
            continue
        comparison = orjson.loads(comparison_file.read_bytes()) if comparison_file.exists() else None
        out[folder.name] = (pd.read_parquet(daily_file), comparison)
    return out
