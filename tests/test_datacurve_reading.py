"""The data curve's reading says what the data allow: a significant rise, a flat curve only when the interval
excludes a meaningful gain, and otherwise a rising estimate with the seeds that would settle it. Checked on
constructed results, read by the same code as a real study (judge_variants, analyse)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from kaizen.study import stats
from kaizen.study.datacurve import analyse
from kaizen.study.report.text import headline
from kaizen.study.results import Results, RunRecord, VariantResult, judge_variants

FRACTIONS = [0.125, 0.25, 0.5, 1.0]


def curve_results(values: list[list[float]], correction: str = "holm") -> Results:
    """A data-curve study in memory: one list of per-seed accuracies per fraction, smallest first."""
    ids = [f"fraction={fraction:g}" for fraction in FRACTIONS]
    variants = []
    for variant_id, fraction, row in zip(ids, FRACTIONS, values):
        runs = [
            RunRecord(
                seed,
                Path(variant_id) / f"seed{seed}",
                "done",
                value=value,
                train_examples=int(1000 * fraction),
            )
            for seed, value in enumerate(row)
        ]
        variants.append(VariantResult(variant_id, [], runs, stats.describe([])))
    study = {
        "baseline": ids[-1],
        "seeds": list(range(len(values[0]))),
        "variants": [{"id": i} for i in ids],
        "fractions": FRACTIONS,
        "title": "data curve",
    }
    judge_variants(study, variants, "test.acc", correction, "t")
    return Results(Path("."), study, variants, "test.acc", correction, "t")


def around(means: list[float], noise: list[list[float]]) -> list[list[float]]:
    return [[mean + e for e in row] for mean, row in zip(means, noise)]


ISSUE_MEANS = [0.916, 0.949, 0.976, 0.985]


def test_the_issue_curve_is_a_rising_estimate_not_flat():
    """91.6 → 94.9 → 97.6 → 98.5% with a last step whose test gives p ≈ 0.06: not 'flat'."""
    noise = [[0.004, -0.004, 0.0], [0.003, -0.003, 0.0], [0.004, -0.002, -0.002], [0.0, 0.003, -0.003]]
    results = curve_results(around(ISSUE_MEANS, noise), correction="none")
    before = results.variants[2].difference
    assert 0.05 < before.p_value < 0.1  # the step the issue quotes: not significant
    curve = analyse(results)
    assert curve.rising is None
    assert curve.reading.startswith("rising estimate, not yet significant: test.acc 97.60% → 98.50%")
    assert "flat" not in curve.reading and "+0.90 pts per doubling" in curve.reading
    assert "seeds per size would settle it (this curve has 3)" in curve.reading
    needed = int(curve.reading.split("about ")[1].split(" seeds")[0])
    assert needed > 3
    # with that many seeds and the same mean and spread of the paired differences, the rise is significant
    differences = np.subtract(
        list(results.variants[3].values.values()), list(results.variants[2].values.values())
    )
    mean, sd = differences.mean(), differences.std(ddof=1)
    t = mean / (sd / np.sqrt(needed))
    assert 2 * scipy_stats.t.sf(t, needed - 1) < 0.05


def test_a_significant_rise_is_still_rising_and_agrees_with_the_verdicts():
    noise = [[0.001, -0.001, 0.0], [0.0, 0.001, -0.001], [0.002, -0.001, -0.001], [0.001, 0.0, -0.001]]
    results = curve_results(around(ISSUE_MEANS, noise))
    curve = analyse(results)
    assert curve.rising is True and curve.reading.startswith("still rising")
    assert "adjusted p" in curve.reading
    # the report's verdict of the second largest size says the same: worse than the full data
    assert results.variants[2].verdict.label == "worse"
    assert any(
        line.startswith("Significantly worse") and "fraction=0.5 (" in line for line in headline(results)
    )


def test_flat_only_when_the_interval_excludes_a_meaningful_gain():
    means = [0.95, 0.97, 0.980, 0.9805]
    tight = [[0.0005, -0.0005, 0.0], [0.0, 0.0005, -0.0005], [0.001, -0.001, 0.0], [0.0, -0.001, 0.001]]
    curve = analyse(curve_results(around(means, tight)))
    assert curve.rising is False and curve.reading.startswith("flat:")
    assert "the interval excludes a gain of 1.00 pts per doubling" in curve.reading
    slow = analyse(curve_results(around([0.95, 0.97, 0.980, 0.983], tight)))
    assert slow.rising is False and slow.reading.startswith("rising slowly")
    noisy = [[0.02, -0.02, 0.0], [0.02, -0.01, -0.01], [0.03, -0.03, 0.0], [-0.03, 0.03, 0.0]]
    unsure = analyse(curve_results(around(means, noisy)))
    assert unsure.rising is None and not unsure.reading.startswith("flat")
    assert "not ruled out" in unsure.reading or unsure.reading.startswith("rising estimate")


def test_a_significant_fall_is_falling_and_two_seeds_give_estimates_only():
    means = [0.95, 0.97, 0.98, 0.96]
    noise = [[0.001, -0.001, 0.0], [0.0, 0.001, -0.001], [0.002, -0.001, -0.001], [0.001, 0.0, -0.001]]
    curve = analyse(curve_results(around(means, noise)))
    assert curve.rising is False and curve.reading.startswith("falling")
    two = analyse(curve_results(around(ISSUE_MEANS, [[0.001, -0.001]] * 4)))
    assert two.rising is None and "estimates only" in two.reading and "at least 3 seeds" in two.reading


READ_INTERVAL = re.compile(r"interval \[([+-][0-9.]+) pts, ([+-][0-9.]+) pts\]")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(3, 5).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(0.85, 0.99, allow_subnormal=False), min_size=n, max_size=n),
            min_size=4,
            max_size=4,
        )
    )
)
def test_the_reading_never_contradicts_its_interval_or_the_verdicts(values):
    results = curve_results(values)
    curve = analyse(results)
    match = READ_INTERVAL.search(curve.reading)
    assert match, curve.reading
    low, high = float(match.group(1)), float(match.group(2))
    state = curve.reading.split(":")[0]
    if state == "flat":
        assert high < 1.0 and curve.rising is False
    elif state == "still rising":
        assert low > 0 and high >= 1.0 and curve.rising is True
    elif state in ("rising estimate, not yet significant", "cannot tell yet"):
        assert low <= 0 <= high and curve.rising is None and "would settle it" in curve.reading
    # the report's verdict on the second largest size reads the same comparison
    label = results.variants[2].verdict.label
    assert (label == "worse") == state.startswith(("still rising", "rising slowly"))
    assert (label == "better") == (state == "falling")
