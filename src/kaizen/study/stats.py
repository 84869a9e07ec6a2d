"""Statistics of a study: a variant's mean, spread and 95% interval, and its difference from the baseline.

Intervals use the t-distribution (few seeds) or a percentile bootstrap over seeds; an accuracy's interval is
clipped to [0, 1]. The difference is tested with a paired t-test when both variants finished the same seeds
(runs with the same seed share the data order, so pairing removes that noise), else with Welch's t-test
(unequal variances). The p-values of all comparisons against the baseline are adjusted together (Holm by
default, or Bonferroni) and a judged difference's interval is at the level matching its adjusted p, from the
same test, so the two never disagree; the verdict itself is kaizen.study.verdict's one rule (with fewer than
MIN_SEEDS_FOR_VERDICT seeds there is no verdict, only estimates). The effect size is Hedges' g: the difference of means over the pooled
standard deviation, times the small-sample correction 1 - 3 / (4 (n_a + n_b) - 9). Where the runs kept their
test-set predictions, a paired bootstrap over test examples and seeds gives a second interval of the difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as scipy_stats

from kaizen.errors import KaizenError
from kaizen.registry import did_you_mean

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
CORRECTIONS = ("holm", "bonferroni", "none")
INTERVALS = ("t", "bootstrap")
# Below this many seeds a p-value rests on one or two differences: the report gives estimates, no verdict.
MIN_SEEDS_FOR_VERDICT = 3
BOOTSTRAP_SAMPLES = 4000  # resamples of a percentile bootstrap (seeded: a report is the same every time)
POWER = 0.8


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
    the p-value of `test` ("paired t", "Welch t" or "" when there is too little data), Hedges' g, and once
    judged with the others (`judge`): the adjusted p-value, the interval at the level that matches it (it
    excludes 0 exactly when the adjusted p is below SIGNIFICANCE), the minimum detectable difference, the
    verdict and P(variant beats baseline)."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    hedges_g: float
    p_adj: float = math.nan
    verdict: str = ""
    p_beats: float = math.nan
    standard_error: float = math.nan  # of the difference, for intervals at other levels
    df: float = math.nan  # degrees of freedom of the test
    confidence: float = CONFIDENCE  # the level of [ci_low, ci_high]; once judged, the level matching p_adj
    detectable: float = math.nan  # the smallest |difference| the test detects with POWER (once judged)


NO_DIFFERENCE = Difference(math.nan, math.nan, math.nan, math.nan, "", math.nan)


def t_interval(
    mean: float, standard_error: float, df: float, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Return the interval mean ± t((1 + confidence) / 2, df) · standard_error (NaN when df < 1)."""
    if not df >= 1 or not math.isfinite(standard_error):
        return math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * standard_error
    return mean - half, mean + half


def bootstrap_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean of `values` (resampled with replacement)."""
    array = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), size=(BOOTSTRAP_SAMPLES, len(array)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def clip(interval: tuple[float, float], bounds: tuple[float, float] | None) -> tuple[float, float]:
    """An interval cut to `bounds` (an accuracy lives in [0, 1]); unchanged when bounds is None."""
    if bounds is None:
        return interval
    low, high = interval
    return max(low, bounds[0]), min(high, bounds[1])


def describe(
    values: Sequence[float], interval: str = "t", bounds: tuple[float, float] | None = None
) -> Spread:
    """Return the Spread of `values` with a t or bootstrap interval clipped to `bounds`: std and interval
    need at least two values."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    std = float(array.std(ddof=1))
    if interval == "bootstrap":
        low, high = bootstrap_interval(array)
    else:
        low, high = t_interval(mean, std / math.sqrt(n), n - 1)
    low, high = clip((low, high), bounds)
    return Spread(n, mean, std, low, high)


def welch(baseline: Sequence[float], variant: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test of variant against baseline: (t, degrees of freedom, two-sided p)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = b.mean() - a.mean()
    if var_a + var_b == 0:
        return _degenerate(diff, len(a) + len(b) - 2)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    t = diff / math.sqrt(var_a + var_b)
    return float(t), float(df), float(2 * scipy_stats.t.sf(abs(t), df))


def paired(baseline: Sequence[float], variant: Sequence[float]) -> tuple[float, float, float]:
    """Paired t-test of variant against baseline (same order = same seed): (t, df, two-sided p)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    differences = b - a
    spread = differences.std(ddof=1)
    if spread == 0:
        return _degenerate(float(differences.mean()), len(a) - 1)
    t = float(differences.mean()) / (spread / math.sqrt(len(a)))
    df = len(a) - 1
    return t, float(df), float(2 * scipy_stats.t.sf(abs(t), df))


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


def difference(
    baseline: Mapping[Hashable, float], variant: Mapping[Hashable, float], interval: str = "t"
) -> Difference:
    """Compare a variant's values with the baseline's, both keyed by seed (or (split seed, seed)).

    Paired when both hold the same seeds (at least two), else Welch when each has at least two values;
    with less data the difference is reported without a test (p NaN). `interval` bootstrap resamples the
    paired differences (or each side, unpaired) instead of using the t-distribution.
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
            diff = float(np.mean(np.subtract(b, a)))  # what the paired test tests, to the last bit
            _, df, p_value = paired(a, b)
            standard_error = float(np.std(np.subtract(b, a), ddof=1)) / math.sqrt(len(seeds))
            low, high = t_interval(diff, standard_error, df)
            if interval == "bootstrap":
                low, high = bootstrap_interval(np.subtract(b, a))
            return Difference(diff, low, high, p_value, "paired t", g, standard_error=standard_error, df=df)
        if len(a_values) >= 2 and len(b_values) >= 2:
            _, df, p_value = welch(a_values, b_values)
            standard_error = math.sqrt(
                _var(np.asarray(a_values)) / len(a_values) + _var(np.asarray(b_values)) / len(b_values)
            )
            low, high = t_interval(diff, standard_error, df)
            if interval == "bootstrap":
                low, high = _unpaired_bootstrap(a_values, b_values)
            return Difference(diff, low, high, p_value, "Welch t", g, standard_error=standard_error, df=df)
    return Difference(diff, math.nan, math.nan, math.nan, "", g)


def _unpaired_bootstrap(
    baseline: Sequence[float], variant: Sequence[float], seed: int = 0
) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of mean(variant) - mean(baseline), each side resampled alone."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    rng = np.random.default_rng(seed)
    draws = b[rng.integers(0, len(b), (BOOTSTRAP_SAMPLES, len(b)))].mean(1) - a[
        rng.integers(0, len(a), (BOOTSTRAP_SAMPLES, len(a)))
    ].mean(1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------ many comparisons at once


def adjust(p_values: Sequence[float], correction: str = "holm") -> list[float]:
    """p-values adjusted for multiple comparisons (NaNs, comparisons without a test, are left out and kept).

    holm: the step-down method, sort p ascending, p_adj(i) = max over j <= i of min(1, (m - j) p(j))
    (0-based); bonferroni: min(1, m p); none: unchanged. m counts the finite p-values.
    """
    if correction not in CORRECTIONS:
        raise KaizenError(
            f"--correction must be one of {', '.join(CORRECTIONS)}, not '{correction}'"
            f"{did_you_mean(correction, list(CORRECTIONS))}"
        )
    finite = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    adjusted = [float(p) for p in p_values]
    m = len(finite)
    if correction == "bonferroni":
        for i in finite:
            adjusted[i] = min(1.0, m * p_values[i])
    elif correction == "holm":
        running = 0.0
        for rank, i in enumerate(sorted(finite, key=lambda i: p_values[i])):
            running = max(running, min(1.0, (m - rank) * p_values[i]))
            adjusted[i] = running
    return adjusted


def p_beats(baseline: Sequence[float], variant: Sequence[float], higher_is_better: bool = True) -> float:
    """P(variant beats baseline) over all pairs of one variant seed and one baseline seed (ties count half)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if not len(a) or not len(b):
        return math.nan
    delta = b[:, None] - a[None, :]
    if not higher_is_better:
        delta = -delta
    return float(((delta > 0).sum() + 0.5 * (delta == 0).sum()) / delta.size)


def matching_confidence(p_value: float, p_adj: float, comparisons: int, correction: str) -> float:
    """The level of the difference's interval that matches its adjusted p-value: 1 - SIGNIFICANCE · p / p_adj.

    A test's (1 - a) interval excludes 0 exactly when its raw p < a, and p_adj < SIGNIFICANCE exactly when
    p < SIGNIFICANCE · p / p_adj, so at this level the interval and the adjusted p always tell the same story
    (Bonferroni: 1 - SIGNIFICANCE / m; Holm: the step-down's own factor). 95% without a correction; where p
    is 0 (no spread at all), 1 - SIGNIFICANCE / m."""
    if correction == "none" or not math.isfinite(p_value):
        return CONFIDENCE
    if p_value > 0 and p_adj > 0:
        return 1 - SIGNIFICANCE * p_value / p_adj
    return 1 - SIGNIFICANCE / max(1, comparisons)


def detectable_difference(standard_error: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest |difference| a two-sided t-test at level `alpha` detects with `power`:
    (t(1 - alpha / 2, df) + t(power, df)) · standard_error (NaN when undefined)."""
    if not (df >= 1 and math.isfinite(standard_error)):
        return math.nan
    quantiles = scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df)
    return float(quantiles * standard_error)


# The verdict labels (kaizen.study.verdict words them).
BETTER, WORSE, UNCLEAR, TEST_SET_TOO_SMALL = "better", "worse", "no clear difference", "test set too small"
TOO_FEW_SEEDS, NO_TEST = "too few seeds", "no test"
DECIDED = (BETTER, WORSE)


def decide(
    difference: Difference, seeds: int, higher_is_better: bool, test_set_resolves: bool | None = None
) -> str:
    """The verdict label of a judged difference: the one rule every sentence reads (see kaizen.study.verdict).
    `test_set_resolves` is None where the test set's own resolution is not known or not relevant (a metric
    other than test accuracy)."""
    if seeds < MIN_SEEDS_FOR_VERDICT:
        return TOO_FEW_SEEDS
    if not math.isfinite(difference.p_adj):
        return NO_TEST
    if not difference.p_adj < SIGNIFICANCE:
        return UNCLEAR
    if test_set_resolves is False:
        return TEST_SET_TOO_SMALL
    return BETTER if (difference.diff > 0) == higher_is_better else WORSE


def verdict_of(difference: Difference, p_adj: float, seeds: int, higher_is_better: bool) -> str:
    """The verdict of a comparison from its seeds alone (no test-set check): `decide`."""
    return decide(replace(difference, p_adj=p_adj), seeds, higher_is_better)


def judge(
    baseline: Mapping[Hashable, float],
    variants: Mapping[str, Mapping[Hashable, float]],
    higher_is_better: bool = True,
    correction: str = "holm",
    interval: str = "t",
) -> dict[str, Difference]:
    """Every variant against the baseline: the difference, its p-value adjusted over all the comparisons,
    its interval at the level matching the adjusted p (from the same t-test: `interval` bootstrap only
    changes the 95% interval difference() reports on its own, never a judged one), the difference the
    test could detect, P(beats baseline) and the verdict. This is the one path from numbers to verdicts."""
    raw = {name: difference(baseline, values, interval) for name, values in variants.items()}
    names = list(raw)
    adjusted = adjust([raw[name].p_value for name in names], correction)
    comparisons = sum(1 for name in names if math.isfinite(raw[name].p_value))
    alpha = SIGNIFICANCE if correction == "none" else SIGNIFICANCE / max(1, comparisons)
    judged = {}
    for name, p_adj in zip(names, adjusted):
        seeds = min(len(baseline), len(variants[name]))
        found = raw[name]
        confidence = matching_confidence(found.p_value, p_adj, comparisons, correction)
        low, high = t_interval(found.diff, found.standard_error, found.df, confidence)
        found = replace(
            found,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            p_adj=p_adj,
            detectable=detectable_difference(found.standard_error, found.df, alpha),
            p_beats=p_beats(list(baseline.values()), list(variants[name].values()), higher_is_better),
        )
        judged[name] = replace(found, verdict=verdict_of(found, p_adj, seeds, higher_is_better))
    return judged


# ------------------------------------------------------------------------------ test examples, power, variance


def paired_examples(
    baseline: Mapping[Hashable, np.ndarray],
    variant: Mapping[Hashable, np.ndarray],
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float, float]:
    """A paired bootstrap over test examples and seeds of the accuracy difference (variant - baseline).

    `baseline` and `variant` map a seed to the boolean per-example correctness on the same test images; each
    resample draws seeds (pairs kept) and test examples (the same ones for both) with replacement. Returns
    (difference, low, high, two-sided p), the interval at `confidence` (95% by default), the p-value being twice the smaller tail share of resampled
    differences beyond 0; NaNs when no seed is shared.
    """
    seeds = [key for key in baseline if key in variant and len(baseline[key]) == len(variant[key])]
    if not seeds:
        return math.nan, math.nan, math.nan, math.nan
    delta = np.stack([variant[key].astype(float) - baseline[key].astype(float) for key in seeds])  # S × N
    observed = float(delta.mean())
    rng = np.random.default_rng(seed)
    count, examples = delta.shape
    draws = np.empty(BOOTSTRAP_SAMPLES)
    for index in range(BOOTSTRAP_SAMPLES):  # resample seeds, then examples of their mean difference
        rows = delta[rng.integers(0, count, count)].mean(axis=0)
        draws[index] = rows[rng.integers(0, examples, examples)].mean()
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    p_value = min(1.0, 2 * min((draws <= 0).mean(), (draws >= 0).mean()))
    return observed, float(low), float(high), float(p_value)


def seeds_for_power(diff: float, sd: float, power: float = POWER, limit: int = 1000) -> int | None:
    """Seeds per variant a two-sided paired t-test at SIGNIFICANCE needs to detect `diff` with `power`,
    when the paired differences have standard deviation `sd` (noncentral t; None beyond `limit`)."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0:
        return None
    if sd == 0:
        return 2
    effect = abs(diff) / sd
    for n in range(2, limit + 1):
        df = n - 1
        critical = scipy_stats.t.ppf(1 - SIGNIFICANCE / 2, df)
        achieved = scipy_stats.nct.sf(critical, df, effect * math.sqrt(n))
        if achieved >= power:
            return n
    return None


def variance_components(values: Mapping[tuple[int, int], float]) -> tuple[float, float] | None:
    """(split std, initialisation std) of values keyed by (split seed, seed), from one-way random-effects
    ANOVA with seeds nested in splits: init var = mean within-split variance, split var =
    max(0, var of split means - init var / seeds per split). None without two splits of two seeds each."""
    by_split: dict[int, list[float]] = {}
    for (split, _), value in values.items():
        by_split.setdefault(split, []).append(value)
    groups = [np.asarray(group) for group in by_split.values() if len(group) >= 2]
    if len(groups) < 2:
        return None
    within = float(np.mean([group.var(ddof=1) for group in groups]))
    per_split = float(np.mean([len(group) for group in groups]))
    between = float(np.var([group.mean() for group in groups], ddof=1))
    return math.sqrt(max(0.0, between - within / per_split)), math.sqrt(within)
