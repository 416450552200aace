"""Metric definitions per domain, per-user comparisons and the job's output files (no Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.paths import DataPaths
from experiments.analysis import (
    ABReport,
    compare,
    comparisons,
    domain_metrics,
    format_table,
    read_outputs,
    write_outputs,
)
from experiments.stats import srm_check


def users() -> pd.DataFrame:
    return pd.DataFrame({
        "arm": ["control"] * 3 + ["treatment"] * 3,
        "impressions": [10, 10, 20, 10, 10, 10],
        "clicks": [1, 0, 2, 2, 1, 3],
        "attributed_conversions": [0, 0, 1, 1, 0, 1],
        "orders": [1, 0, 1, 1, 2, 0],
        "revenue": [50.0, 0, 30, 60, 100, 0],
        "applications": [0] * 6,
        "approvals": [0] * 6,
    })


def test_domain_metrics() -> None:
    assert [m.name for m in domain_metrics("retail")] == [
        "ctr", "conversion_per_impression", "conversion_per_user", "aov", "revenue_per_user"]
    assert [m.name for m in domain_metrics("banking")] == [
        "ctr", "conversion_per_impression", "applied_per_user", "approved_per_user"]


def test_compare_uses_the_metric_kind() -> None:
    frame = users()
    by_name = {m.name: m for m in domain_metrics("retail")}
    ctr = compare(frame, by_name["ctr"], "control", "treatment")
    assert (ctr.method, ctr.control, ctr.treatment) == ("delta_ratio", 3 / 40, 6 / 30)
    buyers = compare(frame, by_name["conversion_per_user"], "control", "treatment")
    assert (buyers.method, buyers.control, buyers.treatment) == ("proportion", 2 / 3, 2 / 3)
    aov = compare(frame, by_name["aov"], "control", "treatment", ci="bootstrap", n_boot=300)
    assert (aov.method, aov.control, aov.treatment) == ("bootstrap", 40.0, pytest.approx(160 / 3))
    revenue = compare(frame, by_name["revenue_per_user"], "control", "treatment")
    assert (revenue.method, revenue.diff) == ("welch", pytest.approx(160 / 3 - 80 / 3))


def report_for(frame: pd.DataFrame) -> ABReport:
    rows = comparisons(frame, domain_metrics("retail"), "control", ["treatment"])
    return ABReport("retail", "exp", "control", "2025-03-10", "2025-03-11",
                    {"control": {"users": 3.0}, "treatment": {"users": 3.0}},
                    srm_check({"control": 3, "treatment": 3}, {"control": 0.5, "treatment": 0.5}), rows)


def test_comparisons_carry_the_mde() -> None:
    rows = report_for(users()).comparisons
    ctr = next(r for r in rows if r["metric"] == "ctr")
    assert ctr["mde"] > 0 and ctr["mde_relative"] == pytest.approx(ctr["mde"] / ctr["control"])
    text = format_table(report_for(users()))
    assert "ctr" in text and "SRM chi2=0 p=1 ok" in text


def daily(dates: list[str], value: float) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "date": d, "users": 1, "ctr": value} for d in dates for arm in ("control", "treatment")])


def test_outputs_replace_the_rows_of_the_dates_written(tmp_path) -> None:
    paths = DataPaths(tmp_path / "data")
    report = report_for(users())
    write_outputs(report, daily(["2025-03-10", "2025-03-11"], 0.1), paths)
    write_outputs(report, daily(["2025-03-11", "2025-03-12"], 0.2), paths)
    saved, comparison = read_outputs(paths)["retail"]
    assert list(zip(saved["date"], saved["arm"], saved["ctr"], strict=True)) == [
        ("2025-03-10", "control", 0.1), ("2025-03-10", "treatment", 0.1),
        ("2025-03-11", "control", 0.2), ("2025-03-11", "treatment", 0.2),
        ("2025-03-12", "control", 0.2), ("2025-03-12", "treatment", 0.2)]
    assert comparison is not None and comparison["srm"]["flagged"] is False
    assert (paths.experiments("retail") / "comparison.json").exists()
    assert not np.isnan(comparison["comparisons"][0]["lift"])
