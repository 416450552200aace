"""A/B statistics on hand-made samples with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from experiments.stats import (
    bootstrap_ci,
    bootstrap_compare,
    compare_means,
    compare_proportions,
    compare_ratios,
    mde_proportion,
    minimum_detectable_effect,
    ratio_estimate,
    srm_check,
)

Z975 = 1.959963984540054


def test_welch_interval_on_a_hand_computed_sample() -> None:
    control, treatment = np.array([1, 2, 3, 4, 5.0]), np.array([2, 4, 6, 8, 10.0])
    result = compare_means(control, treatment)
    # means 3 and 6, variances 2.5 and 10: se^2 = 2.5/5 + 10/5 = 2.5, Welch df = 2.5^2 / (0.5^2/4 + 2^2/4)
    se, df = math.sqrt(2.5), 6.25 / 1.0625
    half = st.t.ppf(0.975, df) * se
    assert (result.control, result.treatment, result.diff) == (3.0, 6.0, 3.0)
    assert result.diff_ci == pytest.approx((3.0 - half, 3.0 + half))
    assert result.p_value == pytest.approx(st.ttest_ind(treatment, control, equal_var=False).pvalue)
    assert result.lift == pytest.approx(1.0)
    # delta method of t/c: var = var_t / c^2 + t^2 var_c / c^4 = 2/9 + 36 * 0.5 / 81 (same t quantile)
    lift_half = st.t.ppf(0.975, df) * math.sqrt(2 / 9 + 36 * 0.5 / 81)
    assert result.lift_ci == pytest.approx((1 - lift_half, 1 + lift_half))
    assert result.control_std == pytest.approx(math.sqrt(2.5))


def test_welch_interval_of_two_known_normals() -> None:
    """N(10, 2^2) vs N(10.5, 3^2), 20k each: the interval is 0.5 +- 1.96 sqrt(4/n + 9/n) and covers 0.5."""
    rng = np.random.default_rng(7)
    n = 20_000
    result = compare_means(rng.normal(10, 2, n), rng.normal(10.5, 3, n))
    half = (result.diff_ci[1] - result.diff_ci[0]) / 2
    assert half == pytest.approx(Z975 * math.sqrt(4 / n + 9 / n), rel=0.03)
    assert result.diff_ci[0] < 0.5 < result.diff_ci[1]
    assert result.significant


def test_welch_interval_has_nominal_coverage() -> None:
    rng = np.random.default_rng(11)
    covered = [compare_means(rng.normal(0, 1, 200), rng.normal(0.3, 2, 150)).diff_ci for _ in range(400)]
    rate = np.mean([low < 0.3 < high for low, high in covered])
    assert 0.92 <= rate <= 0.98


def test_proportions_hand_computed() -> None:
    result = compare_proportions(100, 1000, 130, 1000)
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert result.diff == pytest.approx(0.03)
    assert result.diff_ci == pytest.approx((0.03 - Z975 * se, 0.03 + Z975 * se))
    pooled_se = math.sqrt(0.115 * 0.885 * 2 / 1000)  # pooled rate 230 / 2000
    assert result.p_value == pytest.approx(2 * st.norm.sf(0.03 / pooled_se))
    assert result.lift == pytest.approx(0.3)
    assert not compare_proportions(500, 1000, 500, 1000).significant


def test_delta_method_aov_hand_computed() -> None:
    """AOV = revenue / orders over users; the linearised values are revenue - AOV * orders."""
    revenue_c, orders_c = np.array([100, 0, 50, 150.0]), np.array([2, 0, 1, 1.0])
    aov, var, sd = ratio_estimate(revenue_c, orders_c)
    # AOV 300/4 = 75; d = [-50, 0, -25, 75] (mean 0), var(d) = 8750/3, mean(orders) = 1
    assert aov == 75.0
    assert sd == pytest.approx(math.sqrt(8750 / 3))
    assert var == pytest.approx(8750 / 3 / 4)
    revenue_t, orders_t = np.array([90, 60, 0, 210.0]), np.array([1, 1, 0, 2.0])
    # AOV 360/4 = 90; d = [0, -30, 0, 30], var(d) = 1800/3, var(AOV) = 600/4 = 150
    result = compare_ratios(revenue_c, orders_c, revenue_t, orders_t)
    se = math.sqrt(8750 / 12 + 150)
    assert (result.control, result.treatment, result.diff) == (75.0, 90.0, 15.0)
    assert result.diff_ci == pytest.approx((15 - Z975 * se, 15 + Z975 * se))
    assert result.p_value == pytest.approx(2 * st.norm.sf(15 / se))


def test_delta_method_and_user_bootstrap_agree_on_clustered_orders() -> None:
    """Users with a random number of orders of random value: both intervals have the same width."""
    rng = np.random.default_rng(3)

    def users(n: int, mean_value: float) -> tuple[np.ndarray, np.ndarray]:
        orders = rng.poisson(1.2, n).astype(float)
        user_level = rng.gamma(2.0, mean_value / 2.0, n)  # order values are correlated within a user
        return orders * user_level * rng.uniform(0.8, 1.2, n), orders

    (rc, oc), (rt, ot) = users(4000, 50.0), users(4000, 55.0)
    delta = compare_ratios(rc, oc, rt, ot)
    boot = bootstrap_compare(rc, rt, oc, ot, n_boot=1000, seed=1)
    assert boot.diff == pytest.approx(delta.diff)
    width_delta, width_boot = np.diff(delta.diff_ci)[0], np.diff(boot.diff_ci)[0]
    assert width_boot == pytest.approx(width_delta, rel=0.12)
    assert boot.lift_ci[0] < boot.lift < boot.lift_ci[1]


def test_bootstrap_ci_covers_the_true_mean_and_is_seeded() -> None:
    rng = np.random.default_rng(5)
    sample = rng.exponential(2.0, 2000)  # true mean 2, sd 2
    low, high = bootstrap_ci(sample, n_boot=2000, seed=9)
    assert low < 2.0 < high
    assert high - low == pytest.approx(2 * Z975 * 2.0 / math.sqrt(2000), rel=0.15)
    assert bootstrap_ci(sample, n_boot=2000, seed=9) == (low, high)
    assert bootstrap_ci(sample, n_boot=2000, seed=10) != (low, high)


def test_bootstrap_ci_has_nominal_coverage() -> None:
    rng = np.random.default_rng(21)
    hits = [low < 1.0 < high for low, high in (bootstrap_ci(rng.exponential(1.0, 300), 500, seed=s) for s in range(200))]
    assert 0.90 <= np.mean(hits) <= 0.99


def test_srm_flags_52_48_and_passes_50_50() -> None:
    shares = {"control": 0.5, "treatment": 0.5}
    skewed = srm_check({"control": 52_000, "treatment": 48_000}, shares)
    assert skewed.chi2 == pytest.approx(2 * 2000**2 / 50_000)  # 160
    assert skewed.flagged and skewed.p_value < 1e-30
    even = srm_check({"control": 50_000, "treatment": 50_000}, shares)
    assert even.chi2 == 0.0 and even.p_value == pytest.approx(1.0) and not even.flagged
    assert not srm_check({"control": 50_150, "treatment": 49_850}, shares).flagged  # chi2 = 1.8
    uneven = srm_check({"a": 20_000, "b": 80_000}, {"a": 0.2, "b": 0.8})
    assert uneven.expected == {"a": 20_000.0, "b": 80_000.0} and not uneven.flagged


def test_srm_flags_an_arm_that_should_not_exist() -> None:
    result = srm_check({"control": 500, "treatment": 500, "stray": 3}, {"control": 0.5, "treatment": 0.5})
    assert result.flagged and result.expected["stray"] == 0.0


def test_minimum_detectable_effect_hand_computed() -> None:
    z = Z975 + 0.8416212335729143  # z_{0.975} + z_{0.8}
    assert mde_proportion(0.1, 10_000, 10_000) == pytest.approx(z * math.sqrt(0.09 * 2 / 10_000))  # 0.01189
    assert mde_proportion(0.1, 10_000, 10_000) == pytest.approx(0.011886, abs=1e-6)
    assert minimum_detectable_effect(50.0, 2000, 2000) == pytest.approx(z * 50 * math.sqrt(2 / 2000))  # 4.43
    assert minimum_detectable_effect(50.0, 2000, 2000, power=0.9) > minimum_detectable_effect(50.0, 2000, 2000)
    assert math.isnan(minimum_detectable_effect(1.0, 0, 10))
