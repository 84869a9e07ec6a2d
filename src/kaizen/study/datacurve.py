"""Data curve: the metric and the train/validation gap against training-set size, and whether more data helps.

A data curve is a study whose variants train on fractions of the training split (`data.fraction`); the
largest fraction is the baseline. The reading is about the last step, the two largest sizes: its gain per
doubling of the data (the slope on a log2 scale), with the 95% interval of the paired (or Welch) t-test over
seeds. A gain worth more data is one point of accuracy (2% of the loss) per doubling (MEANINGFUL). The reading
says only what that interval allows:

- "still rising": the interval is above 0 (the gain is significant) and reaches a meaningful gain: more data
  is likely to help; "rising slowly" when the whole interval is above 0 but below a meaningful gain;
- "flat": the interval excludes any meaningful gain (an equivalence statement: its upper end is below one
  point per doubling); "falling" when it is below 0;
- otherwise the data cannot tell yet: "rising estimate, not yet significant" (or "cannot tell yet" when the
  estimate is not a rise), with the seeds per size that would settle it: enough for 80% power to detect
  the observed gain, or to rule out a meaningful one, whichever comes first, from the observed spread of the
  paired differences (stats.seeds_for_power).

Absence of evidence is not called flat: a rise whose p-value is 0.06 is a rising estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.study import stats
from kaizen.study.compare import Plan, Variant, make_plan
from kaizen.study.results import Results, VariantResult
from kaizen.study.verdict import fmt_p, fmt_signed

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
    """The points, smallest first, and the one-line reading; `rising` is True (still rising), False (flat or
    falling) or None (the data cannot tell yet)."""

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
    (before, _), (last, _) = measured[-2], measured[-1]
    step = (
        f"{results.metric} {_show(results.metric, before.spread.mean)} → {_show(results.metric, last.spread.mean)} "
        f"from {_examples(before)} to {_examples(last)} training examples"
    )
    slope = last_step(results, measured[-2], measured[-1])
    return Curve(results.metric, points, slope.rising, f"{slope.reading(step)}")


@dataclass(frozen=True)
class Slope:
    """The last step of a data curve, per doubling of the data and signed so that positive is better: the
    gain, its 95% interval, the p-value, the gain worth more data, seeds run and seeds that would settle it."""

    gain: float
    low: float
    high: float
    p_value: float
    test: str
    confidence: float
    meaningful: float
    seeds: int
    seeds_to_settle: int | None
    accuracy: bool
    p_name: str = "p"
    test_set_resolves: bool | None = None  # where the step is the study's judged comparison (verdict.py)

    @property
    def state(self) -> str:
        """still rising, rising slowly (significant, below a meaningful gain), unresolved (rising over seeds, not resolved by the test set), flat, falling, rising
        estimate (not yet significant), cannot tell, or no test."""
        if not math.isfinite(self.low):
            return "no test"
        if self.low > 0 and self.test_set_resolves is False:
            return "unresolved"
        if self.low > 0:
            return "still rising" if self.high >= self.meaningful else "rising slowly"
        if self.high < 0:
            return "falling"
        if self.high < self.meaningful:
            return "flat"
        return "rising estimate" if self.gain > 0 else "cannot tell"

    @property
    def rising(self) -> bool | None:
        """True when still rising (a meaningful gain is possible), False when flat, falling or rising by less
        than a meaningful gain, None when the data cannot tell."""
        return {"still rising": True, "rising slowly": False, "flat": False, "falling": False}.get(self.state)

    def _number(self, value: float) -> str:
        return f"{fmt_signed(value, 100, 2)} pts" if self.accuracy else fmt_signed(value, 1, 4)

    def reading(self, step: str) -> str:
        """The one-line reading of the curve, `step` naming the two sizes and their means."""
        state = self.state
        if state == "no test":
            return (
                f"cannot tell yet: {step} ({self._number(self.gain)} per doubling from {self.seeds} seed(s) per "
                f"size, estimates only); run at least {stats.MIN_SEEDS_FOR_VERDICT} seeds per size to read the curve"
            )
        evidence = (
            f"{self._number(self.gain)} per doubling, {_level(self.confidence)} interval [{self._number(self.low)}, "
            f"{self._number(self.high)}], {self.p_name} {fmt_p(self.p_value)}, {self.test}"
        )
        worth = f"{self._number(self.meaningful)[1:]} per doubling"
        settle = (
            f"about {self.seeds_to_settle} seeds per size would settle it (this curve has {self.seeds})"
            if self.seeds_to_settle
            else "no practical number of seeds would settle it at this spread"
        )
        if state == "still rising":
            return f"still rising: {step} ({evidence}); more data is likely to help"
        if state == "rising slowly":
            return (
                f"rising slowly: {step} ({evidence}: significant, but the interval excludes a gain of {worth}); "
                "more of the same data helps only a little"
            )
        if state == "unresolved":
            return (
                f"rising over seeds, but the test set is too small to resolve it: {step} ({evidence}); a larger "
                "test set would decide it"
            )
        if state == "falling":
            return f"falling: {step} ({evidence}); more of the same data made it worse"
        if state == "flat":
            return (
                f"flat: {step} ({evidence}: the interval excludes a gain of {worth}); more of the same data is "
                "unlikely to help much"
            )
        if state == "rising estimate":
            return f"rising estimate, not yet significant: {step} ({evidence}); {settle}"
        return f"cannot tell yet: {step} ({evidence}: a gain of {worth} is not ruled out); {settle}"


def last_step(
    results: Results, before: tuple[Point, VariantResult], last: tuple[Point, VariantResult]
) -> Slope:
    """The Slope of the step from the second largest finished size to the largest. Where the largest is the
    baseline, the step is the study's own judged comparison (its adjusted p and the interval at the matching
    level, kaizen.study.verdict), so the curve and the report's verdicts read the same numbers."""
    (before_point, before_variant), (last_point, last_variant) = before, last
    sign = 1 if results.higher_is_better else -1
    doublings = math.log2(last_point.fraction / before_point.fraction)
    accuracy = results.metric.endswith("acc")
    meaningful = ACC_PER_DOUBLING if accuracy else LOSS_PER_DOUBLING * abs(before_point.spread.mean)
    judged = before_variant.difference if last_variant is results.baseline else None
    # before - last, as the study's comparisons are variant - baseline
    difference = judged or stats.difference(last_variant.values, before_variant.values)
    p_value = difference.p_adj if judged is not None else difference.p_value
    seeds = min(len(before_variant.values), len(last_variant.values))
    low, high = sorted((-sign * difference.ci_low / doublings, -sign * difference.ci_high / doublings))
    gain = -sign * difference.diff / doublings
    settle = None
    if math.isfinite(difference.standard_error) and seeds >= 2:
        spread = difference.standard_error * math.sqrt(seeds)  # of the paired differences (Welch: about)
        found = [
            stats.seeds_for_power(gain * doublings, spread) if gain > 0 else None,
            stats.seeds_for_power((meaningful - gain) * doublings, spread) if gain < meaningful else None,
        ]
        settle = min((n for n in found if n is not None), default=None)
    if seeds < stats.MIN_SEEDS_FOR_VERDICT:
        low = high = math.nan  # estimates only, as for every verdict of the study
    resolves = before_variant.verdict.test_set_resolves if judged and before_variant.verdict else None
    p_name = "adjusted p" if judged is not None and results.correction != "none" else "p"
    return Slope(
        gain,
        low,
        high,
        p_value,
        difference.test,
        difference.confidence,
        meaningful,
        seeds,
        settle,
        accuracy,
        p_name,
        resolves,
    )


def _level(confidence: float) -> str:
    return f"{confidence:.1%}".replace(".0%", "%")


def _show(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("acc") else f"{value:.4f}"


def _examples(point: Point) -> str:
    return f"{point.examples:,.0f}" if math.isfinite(point.examples) else f"fraction {point.fraction:g}"
