"""One decision rule for every verdict (kaizen.study.verdict): for random paired samples, the adjusted p-value,
the interval, the test-set check and every rendered sentence and table cell tell the same story."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaizen.study import stats
from kaizen.study import verdict as rule
from kaizen.study.report.console import render_table
from kaizen.study.report.csvfile import results_csv
from kaizen.study.report.text import headline, table_rows
from kaizen.study.results import Results, RunRecord, VariantResult, judge_variants

INTERVAL = re.compile(r"interval \[([+-][0-9.e+-]+), ([+-][0-9.e+-]+)\]")


def make_results(
    base: list[float],
    shifts: list[list[float]],
    correction: str,
    correct: dict[str, list[np.ndarray]] | None = None,
    test_size: int | None = None,
) -> Results:
    """A study held in memory: a baseline and one variant per list of per-seed shifts, judged by the same
    code as `collect` (kaizen.study.results.judge_variants)."""
    seeds = list(range(len(base)))
    ids = ["base"] + [f"variant-{index}" for index in range(len(shifts))]
    values = [base] + [[b + s for b, s in zip(base, shift)] for shift in shifts]
    variants = []
    for variant_id, row in zip(ids, values):
        runs = [
            RunRecord(
                seed=seed,
                path=Path(variant_id) / f"seed{seed}",
                status="done",
                value=value,
                test_size=test_size,
                correct=None if correct is None else correct[variant_id][seed],
            )
            for seed, value in zip(seeds, row)
        ]
        variants.append(VariantResult(variant_id, [], runs, stats.describe([])))
    study = {"baseline": "base", "seeds": seeds, "variants": [{"id": i} for i in ids], "title": "t"}
    judge_variants(study, variants, "test.acc", correction, "t")
    return Results(Path("."), study, variants, "test.acc", correction, "t")


def check_consistent(results: Results) -> None:
    """No sentence or cell contradicts the verdict, and the verdict agrees with its numbers."""
    lines = headline(results)
    rows = {row["variant"]: row for row in table_rows(results)}
    csv_rows = {row["variant"]: row for row in csv.DictReader(io.StringIO(results_csv(results)))}
    for variant in results.variants[1:]:
        verdict, difference = variant.verdict, variant.difference
        assert verdict is not None and difference is not None
        label = verdict.label
        significant = difference.p_adj < stats.SIGNIFICANCE
        excludes_zero = difference.ci_low > 0 or difference.ci_high < 0
        if math.isfinite(difference.p_adj) and math.isfinite(difference.ci_low):
            assert significant == excludes_zero, (difference, label)
        if label in rule.DECIDED:
            assert significant and excludes_zero and verdict.test_set_resolves is not False
            assert (difference.diff > 0) == (label == rule.BETTER)
            if variant.examples is not None:
                assert not variant.examples[1] <= 0 <= variant.examples[2]
        if label == rule.UNCLEAR:
            assert not significant and difference.ci_low <= 0 <= difference.ci_high
        if label == rule.TEST_SET_TOO_SMALL:
            assert significant and verdict.test_set_resolves is False
        # the sentences: the variant appears in exactly the sentence of its label
        mentioned = [line for line in lines if f"{variant.id} (" in line]
        significant_lines = [line for line in mentioned if line.startswith("Significantly")]
        assert bool(significant_lines) == (label in rule.DECIDED)
        if significant_lines:
            assert significant_lines[0].startswith(f"Significantly {label}")
        too_small = [line for line in lines if "too small to resolve" in line and variant.id in line]
        assert not (too_small and significant_lines)
        if label == rule.UNCLEAR:
            assert any(line.startswith("No clear difference") for line in mentioned)
        # the interval as printed never crosses 0 for a decided verdict and always holds it for an unclear one
        for line in mentioned:
            match = INTERVAL.search(line.split(f"{variant.id} (", 1)[1])
            if match:
                low, high = float(match.group(1)), float(match.group(2))
                if label in rule.DECIDED or label == rule.TEST_SET_TOO_SMALL:
                    assert low > 0 or high < 0, line
                else:
                    assert low <= 0 <= high, line
        assert rows[variant.id]["verdict"] == label
        assert csv_rows[variant.id]["verdict"] == label
    render_table(results)  # the terminal table renders from the same labels


samples = st.integers(3, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.5, 0.99, allow_subnormal=False), min_size=n, max_size=n),
        st.lists(
            st.lists(st.floats(-0.05, 0.05, allow_subnormal=False), min_size=n, max_size=n),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from(stats.CORRECTIONS),
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples)
def test_sentences_never_contradict_the_verdict(sample):
    base, shifts, correction = sample
    check_consistent(make_results(base, shifts, correction))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(3, 4),
    st.integers(20, 400),
    st.floats(0.0, 0.3, allow_subnormal=False),
    st.integers(0, 2**31),
    st.sampled_from(stats.CORRECTIONS),
)
def test_the_test_set_check_and_the_seed_verdict_never_contradict(seeds, images, fixes, seed, correction):
    """Per-image results: a variant fixes a share of the baseline's errors on every seed (so the seeds agree),
    on a test set that may be too small to resolve it."""
    rng = np.random.default_rng(seed)
    base = [rng.random(images) < 0.85 for _ in range(seeds)]
    better = [correct | (rng.random(images) < fixes) for correct in base]
    same = [correct ^ (rng.random(images) < 0.02) for correct in base]
    correct = {"base": base, "variant-0": better, "variant-1": same}
    accuracy = [float(c.mean()) for c in base]
    shifts = [
        [float(b.mean()) - a for b, a in zip(better, accuracy)],
        [float(s.mean()) - a for s, a in zip(same, accuracy)],
    ]
    results = make_results(accuracy, shifts, correction, correct, images)
    check_consistent(results)


def test_the_issue_row_significant_over_seeds_but_unresolved_by_the_test_set_says_so_once():
    """The compare of model.norm that printed 'Significantly better (adjusted p 0.035)' and 'too small to
    resolve' for one row: seeds that agree closely, on 40 test images."""
    rng = np.random.default_rng(0)
    base = [rng.random(40) < 0.8 for _ in range(4)]
    better = []
    for correct in base:
        fixed = correct.copy()
        fixed[np.flatnonzero(~correct)[:1]] = True  # one more image right on every seed
        better.append(fixed)
    accuracy = [float(c.mean()) for c in base]
    shifts = [[float(b.mean()) - a for b, a in zip(better, accuracy)]]
    results = make_results(accuracy, shifts, "holm", {"base": base, "variant-0": better}, 40)
    variant = results.variants[1]
    assert variant.difference.p_adj < 0.05  # the seeds agree: +2.5 points every time
    assert variant.verdict.label == rule.TEST_SET_TOO_SMALL
    lines = headline(results)
    assert not any(line.startswith("Significantly") for line in lines)
    assert any("test set cannot resolve it: variant-0" in line for line in lines)
    assert any("too small to resolve the difference of variant-0" in line for line in lines)
    check_consistent(results)


def test_holm_interval_is_at_the_level_of_its_adjusted_p():
    """Two comparisons under Holm: the smaller p is doubled, so its interval is at 97.5%; both intervals
    exclude 0 exactly when their adjusted p is below 0.05."""
    base = [0.90, 0.91, 0.92, 0.93, 0.90]
    clear = {seed: value + d for seed, (value, d) in enumerate(zip(base, [0.02, 0.025, 0.018, 0.022, 0.021]))}
    vague = {seed: value + d for seed, (value, d) in enumerate(zip(base, [0.01, -0.004, 0.012, 0.0, 0.003]))}
    judged = stats.judge(dict(enumerate(base)), {"clear": clear, "vague": vague}, correction="holm")
    first = judged["clear"]
    assert first.p_adj == pytest.approx(2 * first.p_value)
    assert first.confidence == pytest.approx(0.975)
    raw_low, _ = stats.t_interval(first.diff, first.standard_error, first.df, 0.975)
    assert first.ci_low == pytest.approx(raw_low)
    for difference in judged.values():
        assert (difference.p_adj < 0.05) == (difference.ci_low > 0 or difference.ci_high < 0)
    assert judged["clear"].verdict == "better" and judged["vague"].verdict == "no clear difference"
    assert math.isfinite(judged["vague"].detectable) and judged["vague"].detectable > abs(
        judged["vague"].diff
    )


def test_p_values_are_never_rounded_across_the_significance_level():
    assert rule.fmt_p(0.0496) == "0.049" and rule.fmt_p(0.05) == "0.050" and rule.fmt_p(0.0004) == "<0.001"
    assert rule.fmt_signed(0.00001, 100, 2) == "+0.001"
    assert rule.fmt_signed(-0.00004, 100, 2) == "-0.004" and rule.fmt_signed(0.0123, 100, 2) == "+1.23"


def race_of(seeds: int, run: list[float], fix: list[float], other: list[float]):
    from kaizen.verify import BASELINE_LABEL, Entry, Race

    entries = [
        Entry(BASELINE_LABEL, [], None, run, []),
        Entry("optim.lr=0.01", ["optim.lr=0.01"], "diverging", fix, []),
        Entry("model.norm=batch", ["model.norm=batch"], "diverging", other, []),
    ]
    return Race(Path("run"), 3, seeds, 300, sorted(entries, key=lambda entry: -entry.mean))


def test_doctor_verify_advises_a_fix_only_by_the_same_rule():
    """doctor --verify used to advise the highest mean whatever the seeds said: one seed, or a lead within
    the noise, now gets no 'advice: --set', and a clearly better fix gets its adjusted p and interval."""
    from kaizen.verify import race_advice

    one = race_of(1, [0.80], [0.83], [0.79])
    assert race_advice(one).startswith(
        "no verdict: --set optim.lr=0.01 measured highest (83.0% vs the run's 80.0%)"
    )
    clear = race_of(3, [0.80, 0.82, 0.81], [0.90, 0.915, 0.905], [0.81, 0.80, 0.82])
    advice = race_advice(clear)
    assert advice.startswith(
        "advice: --set optim.lr=0.01  (better than the run as it is: +9.67 pts, adjusted p"
    )
    low = float(INTERVAL.search(advice).group(1))
    assert low > 0 and clear.verdicts()["optim.lr=0.01"].label == rule.BETTER
    noisy = race_of(3, [0.80, 0.86, 0.74], [0.84, 0.80, 0.83], [0.79, 0.81, 0.78])
    text = race_advice(noisy)
    assert text.startswith("no candidate is clearly better than the run as it is: --set optim.lr=0.01")
    assert noisy.verdicts()["optim.lr=0.01"].label == rule.UNCLEAR
