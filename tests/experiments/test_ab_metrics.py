"""The Spark A/B metrics job on the hand-built lake of conftest.py; every expectation is worked out by hand.

Window per user (since first exposure): r_u1 control: 3 impressions, 1 click, 1 attributed conversion,
1 order of 100 (the 999 order came before exposure); r_u2 control: 6 impressions, 1 click, 1 organic
order of 40; r_u3 treatment: 3 impressions, 2 clicks, 2 orders 60 + 90, both attributed; r_u4
treatment: 3 impressions, 1 click.
"""

from __future__ import annotations

import math
from datetime import date

import orjson
import pandas as pd
import pytest

from experiments.analysis import read_outputs

Z975 = 1.959963984540054
DAY1, DAY2 = date(2025, 3, 10), date(2025, 3, 11)  # the window of conftest.py's lake


def info(users: int) -> float:
    """Self-information of an item with ``users`` of the 4 reference users (r_u1..r_u4 clicked or bought)."""
    return -math.log2((users + 1) / 5)


# reference users per item: i1 {u1, u4}, i2 {u2}, i3 -, i4 -, i5 {u2, u3}, i6 {u3}
INFO = {"r_i1": info(2), "r_i2": info(1), "r_i3": info(0), "r_i4": info(0), "r_i5": info(2), "r_i6": info(1)}


def test_per_arm_and_day(analysed_lake) -> None:
    daily, _ = read_outputs(analysed_lake.paths)["retail"]
    rows = {(r["arm"], r["date"]): r for r in daily.to_dict("records")}
    assert sorted(rows) == [("control", "2025-03-10"), ("control", "2025-03-11"),
                            ("treatment", "2025-03-10"), ("treatment", "2025-03-11")]
    c1, c2 = rows[("control", "2025-03-10")], rows[("control", "2025-03-11")]
    t1, t2 = rows[("treatment", "2025-03-10")], rows[("treatment", "2025-03-11")]
    assert (c1["users"], c1["impressions"], c1["ctr"]) == (2, 6, pytest.approx(1 / 6))
    assert c1["conversion_per_impression"] == pytest.approx(1 / 6)
    assert (c1["conversion_per_user"], c1["aov"], c1["revenue_per_user"]) == (0.5, 100.0, 50.0)
    assert (c2["users"], c2["ctr"], c2["conversion_per_impression"], c2["aov"]) == (1, pytest.approx(1 / 3), 0.0, 40.0)
    assert (t1["ctr"], t1["aov"], t1["revenue_per_user"], t1["conversion_per_user"]) == (
        pytest.approx(2 / 3), 75.0, 150.0, 1.0)
    assert t2["conversion_per_user"] == 0.0 and pd.isna(t2["aov"])  # no order: AOV undefined, not 0
    # day 1 control slates q1 [i1 i2 i3], q2 [i1 i3 i4]: items i1..i4 of 6; ILD 5/6 and 2/3
    assert c1["coverage"] == pytest.approx(4 / 6)
    assert c1["intra_list_diversity"] == pytest.approx((5 / 6 + 2 / 3) / 2)
    assert c1["novelty"] == pytest.approx((2 * INFO["r_i1"] + INFO["r_i2"] + 2 * INFO["r_i3"] + INFO["r_i4"]) / 6)
    # day 1 treatment q4 [i4 i5 i6], clicks i5 (popular top-3 = i1 i5 i2) and i6 (not): 1 of 3 slots
    assert t1["serendipity"] == pytest.approx(1 / 3)


def test_window_comparison(analysed_lake) -> None:
    report = analysed_lake.reports[0]
    assert (report.mixed_arm_users, report.unassigned_impressions) == (1, 3)
    assert report.srm.observed == {"control": 2, "treatment": 2} and not report.srm.flagged
    control, treatment = report.arms["control"], report.arms["treatment"]
    assert (control["users"], control["impressions"], treatment["impressions"]) == (2, 9, 6)
    assert control["coverage"] == pytest.approx(4 / 6) and treatment["coverage"] == pytest.approx(4 / 6)
    assert treatment["serendipity"] == pytest.approx((1 / 3 + 0) / 2)
    assert control["serendipity"] == 0.0  # clicks on i1 and i2, both in the popular top-3
    assert control["intra_list_diversity"] == pytest.approx((5 / 6 + 2 / 3 + 5 / 6) / 3)
    by_metric = {row["metric"]: row for row in report.comparisons}
    assert set(by_metric) == {"ctr", "conversion_per_impression", "conversion_per_user", "aov", "revenue_per_user"}
    ctr = by_metric["ctr"]
    assert (ctr["control"], ctr["treatment"]) == (pytest.approx(2 / 9), 0.5)
    aov = by_metric["aov"]
    # delta method: control d = [100 - 70, 40 - 70], var(AOV) = 1800 / 2; treatment d = [150 - 2 * 75, 0] -> 0
    assert (aov["control"], aov["treatment"], aov["method"]) == (70.0, 75.0, "delta_ratio")
    assert aov["diff_ci"] == pytest.approx((5 - Z975 * 30, 5 + Z975 * 30))
    assert by_metric["conversion_per_user"]["control"] == 1.0 and by_metric["conversion_per_user"]["treatment"] == 0.5
    assert by_metric["revenue_per_user"]["method"] == "welch"
    assert all(row["arm"] == "treatment" and "mde" in row for row in report.comparisons)


def test_outputs_and_printed_table(analysed_lake) -> None:
    folder = analysed_lake.paths.experiments("retail")
    saved = orjson.loads((folder / "comparison.json").read_bytes())
    assert saved["window"] == {"start": "2025-03-10", "end": "2025-03-11"}
    assert saved["experiment"] == "retail-aov-v1" and saved["control"] == "control"
    assert len(saved["comparisons"]) == 5
    assert "SRM chi2=0 p=1 ok" in analysed_lake.stdout
    assert "aov" in analysed_lake.stdout and "treatment" in analysed_lake.stdout


def test_any_arm_can_be_the_reference(spark, analysed_lake) -> None:
    """``--control treatment``: the other arms are compared against it (e.g. the full pipeline against
    the same pipeline without boosts: the boosts' own effect); the SRM check keeps the configured shares."""
    from experiments.ab_metrics import ABOptions, analyse
    from experiments.assignment import experiment_for

    report, _ = analyse(spark, analysed_lake.paths, "retail", DAY1, DAY2, ABOptions(source="raw", control="treatment"),
                        experiment_for("retail"))
    assert report.control == "treatment"
    assert {row["arm"] for row in report.comparisons} == {"control"}
    ctr = {row["metric"]: row for row in report.comparisons}["ctr"]
    assert (ctr["control"], ctr["treatment"]) == (0.5, pytest.approx(2 / 9))
    assert report.srm.p_value == analysed_lake.reports[0].srm.p_value
