"""Statistics of a study: a variant's mean, spread and 95% interval, and its difference from the baseline.

Intervals use the t-distribution (few seeds). The difference is tested with a paired t-test when both variants
finished the same seeds (runs with the same seed share the data order, so pairing removes that noise), else
with Welch's t-test (unequal variances). The effect size is Hedges' g: the difference of means over the pooled
standard deviation, times the small-sample correction 1 - 3 / (4 (n_a + n_b) - 9).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and 95% t-interval of one variant's values (NaN where undefined)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Difference:
    """A variant against the baseline: difference of means (variant - baseline) with its 95% interval,
    the p-value of `test` ("paired t", "Welch t" or "" when there is too little data) and Hedges' g."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    hedges_g: float


def t_interval(mean: float, standard_error: float, df: float) -> tuple[float, float]:
    """Return the 95% interval mean ± t(0.975, df) · standard_error (NaN when df < 1)."""
    if not df >= 1 or not math.isfinite(standard_error):
        return math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * standard_error
    return mean - half, mean + half


def describe(values: Sequence[float]) -> Spread:
    """Return the Spread of `values`: std and interval need at least two values."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    std = float(array.std(ddof=1))
    low, high = t_interval(mean, std / math.sqrt(n), n - 1)
    return Spread(n, mean, std, low, high)


def welch(baseline: Sequence[float], variant: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test of variant against baseline: (t, degrees of freedom, two-sided p)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = b.mean() - a.mean()
    if var_a + var_b == 0:
        return _degenerate(diff, len(a) + len(b) - 2)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    result = scipy_stats.ttest_ind(b, a, equal_var=False)
    return float(result.statistic), float(df), float(result.pvalue)


def paired(baseline: Sequence[float], variant: Sequence[float]) -> tuple[float, float, float]:
    """Paired t-test of variant against baseline (same order = same seed): (t, df, two-sided p)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    differences = b - a
    if differences.std(ddof=1) == 0:
        return _degenerate(float(differences.mean()), len(a) - 1)
    result = scipy_stats.ttest_rel(b, a)
    return float(result.statistic), float(len(a) - 1), float(result.pvalue)


def _degenerate(diff: float, df: float) -> tuple[float, float, float]:
    """No spread at all (e.g. identical deterministic runs): equal means are p = 1, different ones p = 0."""
    if diff == 0:
        return 0.0, float(df), 1.0
    return math.copysign(math.inf, diff), float(df), 0.0


def hedges_g(baseline: Sequence[float], variant: Sequence[float]) -> float:
    """Hedges' g of variant against baseline (NaN when the pooled standard deviation is 0 or undefined)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    n_a, n_b = len(a), len(b)
    if n_a + n_b < 3 or n_a < 1 or n_b < 1:
        return math.nan
    pooled_var = ((n_a - 1) * _var(a) + (n_b - 1) * _var(b)) / (n_a + n_b - 2)
    if pooled_var <= 0:
        return math.nan
    correction = 1 - 3 / (4 * (n_a + n_b) - 9)
    return float((b.mean() - a.mean()) / math.sqrt(pooled_var) * correction)


def _var(values: np.ndarray) -> float:
    return float(values.var(ddof=1)) if len(values) > 1 else 0.0


def difference(baseline: Mapping[int, float], variant: Mapping[int, float]) -> Difference:
    """Compare a variant's values with the baseline's, both keyed by seed.

    Paired when both hold the same seeds (at least two), else Welch when each has at least two values;
    with less data the difference is reported without a test (p NaN).
    """
    a_values, b_values = list(baseline.values()), list(variant.values())
    if not a_values or not b_values:
        return Difference(math.nan, math.nan, math.nan, math.nan, "", math.nan)
    diff = float(np.mean(b_values) - np.mean(a_values))
    g = hedges_g(a_values, b_values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on near-constant data; handled above
        if set(baseline) == set(variant) and len(baseline) >= 2:
            seeds = sorted(baseline)
            a, b = [baseline[seed] for seed in seeds], [variant[seed] for seed in seeds]
            _, df, p_value = paired(a, b)
            standard_error = float(np.std(np.subtract(b, a), ddof=1)) / math.sqrt(len(seeds))
            low, high = t_interval(diff, standard_error, df)
            return Difference(diff, low, high, p_value, "paired t", g)
        if len(a_values) >= 2 and len(b_values) >= 2:
            _, df, p_value = welch(a_values, b_values)
            standard_error = math.sqrt(
                _var(np.asarray(a_values)) / len(a_values) + _var(np.asarray(b_values)) / len(b_values)
            )
            low, high = t_interval(diff, standard_error, df)
            return Difference(diff, low, high, p_value, "Welch t", g)
    return Difference(diff, math.nan, math.nan, math.nan, "", g)
