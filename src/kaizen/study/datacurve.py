"""Data curve: the metric and the train/validation gap against training-set size, and whether more data helps.

A data curve is a study whose variants train on fractions of the training split (`data.fraction`); the
largest fraction is the baseline. The reading compares the two largest sizes: the curve is "still rising" (more
data is likely to help) when the last step improves the metric significantly (paired or Welch t-test,
p < 0.05) or by at least one point of accuracy (2% of the loss) per doubling of the data; otherwise it is
"flat". The p-value is quoted either way, so a large but uncertain rise says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.study import stats
from kaizen.study.compare import Plan, Variant, make_plan
from kaizen.study.results import Results

SIGNIFICANCE = 0.05
ACC_PER_DOUBLING = 0.01  # a rise worth more data: one point of accuracy per doubling of the training set
LOSS_PER_DOUBLING = 0.02  # or 2% less loss per doubling


@dataclass(frozen=True)
class Point:
    """One training-set size: its fraction, examples, the metric's spread and the mean train - val gap."""

    fraction: float
    examples: float
    spread: stats.Spread
    gap: stats.Spread


@dataclass(frozen=True)
class Curve:
    """The points, smallest first, and the one-line reading."""

    metric: str
    points: list[Point]
    rising: bool | None
    reading: str


def parse_fractions(text: str) -> list[float]:
    """Parse `0.1,0.25,0.5,1`: at least two distinct fractions in (0, 1], returned sorted."""
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise KaizenError(f"--fractions '{text}': expected numbers like 0.1,0.25,0.5,1") from None
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise KaizenError(f"--fractions: {bad[0]:g} is not in (0, 1]")
    fractions = sorted(set(fractions))
    if len(fractions) < 2:
        raise KaizenError("--fractions: give at least two training-set fractions, e.g. 0.25,0.5,1")
    return fractions


def datacurve_plan(base: Config, fractions: list[float], seeds: int, metric: str = "test.acc") -> Plan:
    """The study behind a data curve: one variant per fraction, the largest the baseline."""
    variants = [Variant(f"fraction={fraction:g}", (f"data.fraction={fraction:g}",)) for fraction in fractions]
    return make_plan(
        base,
        variants,
        seeds,
        metric,
        baseline=variants[-1].id,
        kind="datacurve",
        title="data curve",
        question="Will more training data help?",
        description=f"{base.run_name()} trained on {', '.join(f'{f:g}' for f in fractions)} of its training split",
        extra={"fractions": fractions},
    )


def analyse(results: Results) -> Curve:
    """Read the curve from a data-curve study's results."""
    fractions = results.study["fractions"]
    points = []
    for fraction, variant in zip(fractions, results.variants):
        sizes = [run.train_examples for run in variant.done if run.train_examples]
        points.append(
            Point(
                fraction=fraction,
                examples=sum(sizes) / len(sizes) if sizes else math.nan,
                spread=variant.spread,
                gap=stats.describe([run.gap for run in variant.done if math.isfinite(run.gap)]),
            )
        )
    measured = [(point, variant) for point, variant in zip(points, results.variants) if variant.values]
    if len(measured) < 2:
        return Curve(results.metric, points, None, "not enough finished sizes to read the curve")
    (before, before_variant), (last, last_variant) = measured[-2], measured[-1]
    sign = 1 if results.higher_is_better else -1
    gain = sign * (last.spread.mean - before.spread.mean)
    doublings = math.log2(last.fraction / before.fraction)
    if results.metric.endswith("acc"):
        worth_it = gain / doublings >= ACC_PER_DOUBLING
    else:
        worth_it = gain / doublings >= LOSS_PER_DOUBLING * abs(before.spread.mean)
    difference = stats.difference(before_variant.values, last_variant.values)
    if math.isfinite(difference.p_value):
        significant = gain > 0 and difference.p_value < SIGNIFICANCE
        evidence = f"p = {difference.p_value:.2g}, {difference.test}"
        if worth_it and not significant:
            evidence += ", not significant: more seeds would tell"
    else:
        significant = False
        evidence = "one seed, no test"
    rising = significant or worth_it
    step = (
        f"{results.metric} {_show(results.metric, before.spread.mean)} → {_show(results.metric, last.spread.mean)} "
        f"from {_examples(before)} to {_examples(last)} training examples ({evidence})"
    )
    if rising:
        reading = f"still rising: {step}; more data is likely to help"
    else:
        reading = f"flat: {step}; more of the same data is unlikely to help much"
    return Curve(results.metric, points, rising, reading)


def _show(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("acc") else f"{value:.4f}"


def _examples(point: Point) -> str:
    return f"{point.examples:,.0f}" if math.isfinite(point.examples) else f"fraction {point.fraction:g}"
