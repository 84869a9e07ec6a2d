"""The one decision rule of a study: is a variant better or worse than the baseline, or can the data not tell?

Every sentence, table cell, colour and CSV field of compare, study, datacurve and the report reads the label
that `stats.decide` gives, and the words come from `phrase` here, so two parts of a report cannot disagree. The rule:

1. fewer than MIN_SEEDS_FOR_VERDICT seeds: "too few seeds" (estimates only); no test possible: "no test";
2. the adjusted p-value (Holm by default) is at least SIGNIFICANCE: "no clear difference". The difference's
   interval is at the level that matches the adjusted p (stats.matching_confidence), so it contains 0 here
   and excludes 0 otherwise: the p-value and the interval never disagree;
3. a significant difference of test accuracy that the test set itself cannot resolve (the paired bootstrap
   over test examples and seeds, at the same level, contains 0; or, without per-image results, the
   difference is under two standard errors of the difference of two accuracies on that many images):
   "test set too small" (the seeds agree with each other, but on too few test images to generalise);
4. otherwise "better" or "worse", by the sign of the difference and which way the metric is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaizen.study import stats

# The rule and its labels live with the numbers they read; this module words them, and its readers take the
# labels from here, beside their words.
from kaizen.study.stats import (  # noqa: F401
    BETTER,
    DECIDED,
    NO_TEST,
    TEST_SET_TOO_SMALL,
    TOO_FEW_SEEDS,
    UNCLEAR,
    WORSE,
    decide,
)

# The short form of each label in the terminal table, and the colour of a decided row.
SHORT = {UNCLEAR: "n.s.", TOO_FEW_SEEDS: "few seeds", TEST_SET_TOO_SMALL: "small test", "baseline": "base"}
COLOURS = {BETTER: "green", WORSE: "red", "failed": "red"}


def resolution(accuracy: float, test_size: int) -> float:
    """Two standard errors of the difference of two independent accuracies `accuracy` on `test_size` images:
    the smallest difference a test set of that size resolves when per-image results are not kept."""
    return 2 * math.sqrt(2 * accuracy * (1 - accuracy) / test_size)


def test_set_resolves(
    difference: stats.Difference,
    examples: tuple[float, float, float, float] | None,
    test_size: int | None,
    base_accuracy: float,
) -> bool | None:
    """Whether the test set can resolve the difference: the interval over test examples and seeds excludes 0,
    or (without per-image results) the difference is at least `resolution`; None when unknown."""
    if examples is not None and math.isfinite(examples[1]):
        return not examples[1] <= 0 <= examples[2]
    if test_size and math.isfinite(base_accuracy) and math.isfinite(difference.diff):
        return abs(difference.diff) >= resolution(base_accuracy, test_size)
    return None


@dataclass(frozen=True)
class Verdict:
    """A variant's judged comparison with the baseline: the label `decide` gave and the numbers behind it."""

    label: str
    difference: stats.Difference
    seeds: int
    test_set_resolves: bool | None = None


def judged(
    difference: stats.Difference,
    seeds: int,
    higher_is_better: bool,
    examples: tuple[float, float, float, float] | None = None,
    test_size: int | None = None,
    base_accuracy: float = math.nan,
) -> Verdict:
    """The Verdict of a judged difference, the test set's resolution included where it is known."""
    resolves = test_set_resolves(difference, examples, test_size, base_accuracy)
    return Verdict(decide(difference, seeds, higher_is_better, resolves), difference, seeds, resolves)


def fmt_signed(value: float, scale: float, digits: int) -> str:
    """A signed number at `digits` decimals, with more decimals where rounding would show a non-zero value
    as 0 (so an interval that excludes 0 never reads as touching it)."""
    for places in range(digits, 7):
        text = f"{value * scale:+.{places}f}"
        if value == 0 or float(text) != 0:
            return text
    return f"{value * scale:+.2g}"


def fmt_p(value: float) -> str:
    """A p-value at three decimals, rounded down below SIGNIFICANCE so that a significant p never shows as
    0.050 (and one at or above it never as below)."""
    if not math.isfinite(value):
        return "—"
    if value < 0.001:
        return "<0.001"
    if value < stats.SIGNIFICANCE:
        return f"{math.floor(value * 1000) / 1000:.3f}"
    return f"{value:.3f}"


def phrase(verdict: Verdict, accuracy: bool, p_name: str = "adjusted p") -> str:
    """The numbers behind a verdict in words: `+1.20 pts, adjusted p 0.012, 97.5% interval [+0.31, +2.09]`,
    and for an unclear one the difference this study could have detected."""
    difference = verdict.difference
    scale, digits, unit = (100, 2, " pts") if accuracy else (1, 4, "")
    parts = [f"{fmt_signed(difference.diff, scale, digits)}{unit}"]
    if math.isfinite(difference.p_adj):
        parts.append(f"{p_name} {fmt_p(difference.p_adj)}")
    if math.isfinite(difference.ci_low):
        parts.append(
            f"{difference.confidence:.1%} interval [{fmt_signed(difference.ci_low, scale, digits)}, "
            f"{fmt_signed(difference.ci_high, scale, digits)}]".replace(".0%", "%")
        )
    if verdict.label == UNCLEAR and math.isfinite(difference.detectable):
        parts.append(
            f"{len_seeds(verdict.seeds)} detect about ±{difference.detectable * scale:.2f}{unit} with 80% power"
        )
    return ", ".join(parts)


def len_seeds(seeds: int) -> str:
    """`3 seeds`."""
    return f"{seeds} seed{'s' if seeds != 1 else ''}"
