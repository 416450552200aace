"""Two-sample A/B statistics: differences and relative lifts with confidence intervals, the
sample-ratio-mismatch check and the minimum detectable effect.

The unit of analysis is the randomisation unit, the user: a ratio metric (CTR = clicks / impressions,
AOV = revenue / orders) is computed from per-user numerators and denominators, and its variance
accounts for the clustering of impressions / orders within users -- either with the delta method or
with a bootstrap that resamples users. Every comparison is ``treatment - control``; the relative
lift is ``treatment / control - 1`` with a delta-method (or bootstrap) interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

NAN = float("nan")
BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000  # resampled values held in memory at once


@dataclass(frozen=True)
class Comparison:
    """Treatment vs control on one metric."""

    metric: str
    method: str  # welch | proportion | delta_ratio | bootstrap
    control: float
    treatment: float
    n_control: int
    n_treatment: int
    diff: float
    diff_ci: tuple[float, float]
    lift: float
    lift_ci: tuple[float, float]
    p_value: float
    control_std: float  # per-unit standard deviation of the control metric (linearised for ratios)
    alpha: float

    @property
    def significant(self) -> bool:
        return bool(self.p_value < self.alpha)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "significant": self.significant}


def _mean_var(values: np.ndarray) -> tuple[float, float, int]:
    n = len(values)
    mean = float(values.mean()) if n else NAN
    var = float(values.var(ddof=1)) if n > 1 else NAN
    return mean, var, n


def _lift_ci(c: float, t: float, var_c: float, var_t: float, quantile: float) -> tuple[float, tuple[float, float]]:
    """Relative lift ``t / c - 1`` and its delta-method interval (arms independent)."""
    if c == 0 or not math.isfinite(c):
        return NAN, (NAN, NAN)
    lift = t / c - 1.0
    se = math.sqrt(var_t / c**2 + t**2 * var_c / c**4)
    return lift, (lift - quantile * se, lift + quantile * se)


def _analytic(metric: str, method: str, c: float, t: float, n_c: int, n_t: int, var_c: float, var_t: float,
              quantile: float, p_value: float, control_std: float, alpha: float) -> Comparison:
    """Assemble a comparison from the two arm estimates and the variances of those estimates."""
    diff = t - c
    half = quantile * math.sqrt(var_c + var_t)
    lift, lift_ci = _lift_ci(c, t, var_c, var_t, quantile)
    return Comparison(metric, method, c, t, n_c, n_t, diff, (diff - half, diff + half), lift, lift_ci,
                      p_value, control_std, alpha)


def _normal_p(diff: float, se: float) -> float:
    if se == 0 or not math.isfinite(se):
        return 1.0 if diff == 0 else NAN
    return float(2.0 * st.norm.sf(abs(diff) / se))


def z_quantile(alpha: float) -> float:
    return float(st.norm.ppf(1.0 - alpha / 2.0))


def compare_means(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05, metric: str = "") -> Comparison:
    """Welch's t interval and test for the difference of two means (unequal variances)."""
    c, vc, nc = _mean_var(np.asarray(control, dtype=np.float64))
    t, vt, nt = _mean_var(np.asarray(treatment, dtype=np.float64))
    ec, et = vc / nc if nc else NAN, vt / nt if nt else NAN
    se = math.sqrt(ec + et)
    denominator = ec**2 / (nc - 1) + et**2 / (nt - 1) if nc > 1 and nt > 1 else NAN
    df = (ec + et) ** 2 / denominator if denominator else math.inf
    quantile = float(st.t.ppf(1.0 - alpha / 2.0, df)) if math.isfinite(df) else z_quantile(alpha)
    if se > 0:
        p_value = float(2.0 * st.t.sf(abs(t - c) / se, df))
    else:
        p_value = 1.0 if t == c else NAN
    return _analytic(metric, "welch", c, t, nc, nt, ec, et, quantile, p_value, math.sqrt(vc), alpha)


def compare_proportions(
    successes_control: int, n_control: int, successes_treatment: int, n_treatment: int,
    alpha: float = 0.05, metric: str = "",
) -> Comparison:
    """Difference of two proportions: Wald (unpooled) interval, pooled two-proportion z-test."""
    pc = successes_control / n_control if n_control else NAN
    pt = successes_treatment / n_treatment if n_treatment else NAN
    pooled = (successes_control + successes_treatment) / (n_control + n_treatment) if n_control + n_treatment else NAN
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment)) if n_control and n_treatment else NAN
    var_c = pc * (1 - pc) / n_control if n_control else NAN
    var_t = pt * (1 - pt) / n_treatment if n_treatment else NAN
    return _analytic(metric, "proportion", pc, pt, n_control, n_treatment, var_c, var_t, z_quantile(alpha),
                     _normal_p(pt - pc, se0), math.sqrt(pc * (1 - pc)), alpha)


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float, float]:
    """``R = sum(num) / sum(den)`` over units, the delta-method variance of R, and the per-unit linearised
    standard deviation ``sd(num - R den) / mean(den)`` (so that ``var(R) = sd**2 / n``)."""
    num, den = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    n = len(num)
    if n < 2 or den.sum() == 0:
        return NAN, NAN, NAN
    ratio = float(num.sum() / den.sum())
    sd = float(np.std(num - ratio * den, ddof=1) / den.mean())
    return ratio, sd**2 / n, sd


def compare_ratios(
    num_control: np.ndarray, den_control: np.ndarray, num_treatment: np.ndarray, den_treatment: np.ndarray,
    alpha: float = 0.05, metric: str = "",
) -> Comparison:
    """Ratio metric (e.g. AOV = revenue / orders per user), delta method over users, normal interval."""
    c, var_c, sd_c = ratio_estimate(num_control, den_control)
    t, var_t, _ = ratio_estimate(num_treatment, den_treatment)
    return _analytic(metric, "delta_ratio", c, t, len(num_control), len(num_treatment), var_c, var_t,
                     z_quantile(alpha), _normal_p(t - c, math.sqrt(var_c + var_t)), sd_c, alpha)


def bootstrap_sums(columns: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, len(columns))`` column sums over bootstrap resamples of the rows (units), vectorised in
    chunks; all columns share each resample, so ratios of the sums are cluster-bootstrap statistics."""
    data = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    n = len(data)
    out = np.empty((n_boot, data.shape[1]))
    if n == 0:
        out.fill(NAN)
        return out
    chunk = max(1, BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        rows = rng.integers(0, n, size=(size, n))
        out[start:start + size] = data[rows].sum(axis=1)
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean."""
    sums = bootstrap_sums([values], n_boot, np.random.default_rng(seed))[:, 0] / len(values)
    low, high = np.quantile(sums, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_compare(
    num_control: np.ndarray, num_treatment: np.ndarray,
    den_control: np.ndarray | None = None, den_treatment: np.ndarray | None = None,
    n_boot: int = 2000, alpha: float = 0.05, seed: int = 0, metric: str = "",
) -> Comparison:
    """Percentile bootstrap of a mean (``den`` None) or a ratio of sums, resampling users in each arm.

    The p-value is the two-sided bootstrap one, ``2 min(P*(diff <= 0), P*(diff >= 0))``.
    """
    rng = np.random.default_rng(seed)

    def arm(num: np.ndarray, den: np.ndarray | None) -> tuple[float, np.ndarray, float]:
        den = np.ones(len(num)) if den is None else np.asarray(den, dtype=np.float64)
        sums = bootstrap_sums([num, den], n_boot, rng)
        point, _, sd = ratio_estimate(num, den)
        with np.errstate(divide="ignore", invalid="ignore"):
            return point, sums[:, 0] / sums[:, 1], sd

    c, boot_c, sd_c = arm(np.asarray(num_control, dtype=np.float64), den_control)
    t, boot_t, _ = arm(np.asarray(num_treatment, dtype=np.float64), den_treatment)
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    diffs = boot_t - boot_c
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = boot_t / boot_c - 1.0
    d_low, d_high = np.nanquantile(diffs, q)
    l_low, l_high = np.nanquantile(lifts, q) if c else (NAN, NAN)
    p_value = float(min(1.0, 2.0 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))
    return Comparison(metric, "bootstrap", c, t, len(num_control), len(num_treatment), t - c,
                      (float(d_low), float(d_high)), t / c - 1.0 if c else NAN, (float(l_low), float(l_high)),
                      p_value, sd_c, alpha)


@dataclass(frozen=True)
class SRMResult:
    """Sample-ratio-mismatch check: chi-square goodness of fit of the arm counts to the configured shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float
    flagged: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def srm_check(observed: Mapping[str, int], shares: Mapping[str, float], threshold: float = 0.001) -> SRMResult:
    """Flag a sample ratio mismatch when the chi-square p-value is below ``threshold``.

    Arms observed but not configured (or configured but never observed) are part of the test: a stray
    arm has expected count 0 and is always flagged.
    """
    arms = sorted(set(observed) | set(shares))
    counts = np.array([observed.get(a, 0) for a in arms], dtype=np.float64)
    total_share = sum(shares.values())
    expected = np.array([shares.get(a, 0.0) / total_share for a in arms]) * counts.sum()
    if counts.sum() == 0:
        chi2, p_value = 0.0, 1.0
    elif np.any((expected == 0) & (counts > 0)):
        chi2, p_value = math.inf, 0.0
    else:
        keep = expected > 0
        result = st.chisquare(counts[keep], expected[keep])
        chi2, p_value = float(result.statistic), float(result.pvalue)
    return SRMResult({a: int(c) for a, c in zip(arms, counts, strict=True)},
                     {a: float(e) for a, e in zip(arms, expected, strict=True)},
                     chi2, p_value, threshold, bool(p_value < threshold))


def minimum_detectable_effect(
    std: float, n_control: int, n_treatment: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest absolute difference a two-sided test at ``alpha`` detects with ``power``:
    ``(z_{1-alpha/2} + z_{power}) * std * sqrt(1/n_control + 1/n_treatment)``."""
    if n_control <= 0 or n_treatment <= 0:
        return NAN
    return float((z_quantile(alpha) + st.norm.ppf(power)) * std * math.sqrt(1 / n_control + 1 / n_treatment))


def mde_proportion(baseline: float, n_control: int, n_treatment: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The absolute MDE of a conversion rate with the given baseline (Bernoulli std ``sqrt(p (1 - p))``)."""
    return minimum_detectable_effect(math.sqrt(baseline * (1 - baseline)), n_control, n_treatment, alpha, power)
