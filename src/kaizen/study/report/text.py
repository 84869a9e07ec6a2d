"""The words and numbers of a study report, shared by the terminal, markdown, HTML and CSV renderings:
number formats, the verdicts, the headline (the answer in a few sentences), the notes that keep a reader from
being fooled (correction, too few seeds, a test set too small, missing runs, a study still running), the
table rows and the method section."""

from __future__ import annotations

import math
from typing import Any

from kaizen.study import stats, throughput
from kaizen.study import verdict as rule
from kaizen.study.results import Results, VariantResult

# ----------------------------------------------------------------------------------------- numbers


def is_accuracy(metric: str) -> bool:
    """Whether a metric is an accuracy (shown in percent); the gap is in points too."""
    return metric.endswith("acc") or metric == "gap"


def fmt_value(metric: str, value: float) -> str:
    """A metric value: accuracies in percent, losses with four decimals."""
    if not math.isfinite(value):
        return "—"
    return f"{value:.2%}" if is_accuracy(metric) else f"{value:.4f}"


def fmt_spread(metric: str, spread: stats.Spread) -> str:
    """mean ± std (the mean alone with one seed)."""
    if spread.n == 0:
        return "—"
    if not math.isfinite(spread.std):
        return fmt_value(metric, spread.mean)
    std = f"{spread.std * 100:.2f}" if is_accuracy(metric) else f"{spread.std:.4f}"
    return f"{fmt_value(metric, spread.mean)} ± {std}"


def fmt_interval(metric: str, low: float, high: float) -> str:
    """[low, high] or — when undefined (intervals of accuracies are already clipped to [0%, 100%])."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{fmt_value(metric, low)}, {fmt_value(metric, high)}]"


def fmt_diff(metric: str, value: float) -> str:
    """A difference: percentage points for accuracies."""
    if not math.isfinite(value):
        return "—"
    return f"{rule.fmt_signed(value, 100, 2)} pts" if is_accuracy(metric) else rule.fmt_signed(value, 1, 4)


def fmt_diff_interval(metric: str, low: float, high: float) -> str:
    """The difference's interval, in the difference's units (never rounded onto 0 from either side)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    scale, digits = (100, 2) if is_accuracy(metric) else (1, 4)
    return f"[{rule.fmt_signed(low, scale, digits)}, {rule.fmt_signed(high, scale, digits)}]"


def fmt_p(value: float) -> str:
    """A p-value (rounded so that it stays on its side of the significance level)."""
    return rule.fmt_p(value)


def fmt_number(value: float, digits: int = 2) -> str:
    """A plain number or —."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "—"


def fmt_gap(value: float) -> str:
    """The train - validation gap in points."""
    return f"{value * 100:+.1f} pts" if math.isfinite(value) else "—"


def shown_interval(metric: str, spread: stats.Spread) -> tuple[float, float]:
    """The 95% interval as drawn (clipped for accuracies already); the mean itself when undefined."""
    if not math.isfinite(spread.ci_low):
        return spread.mean, spread.mean
    return spread.ci_low, spread.ci_high


# ----------------------------------------------------------------------------------------- verdicts


def verdict(results: Results, variant: VariantResult) -> str:
    """The label kaizen.study.verdict.decide gave the variant (better, worse, no clear difference, test set
    too small, too few seeds, no test), or the variant's state (baseline, not run, failed ...)."""
    if variant.id == results.baseline.id:
        return "baseline"
    if not variant.values:
        return {"incomplete": "not run", "done": "no metric"}.get(variant.status, variant.status)
    if variant.verdict is None:
        return rule.NO_TEST
    return variant.verdict.label


def status_text(variant: VariantResult, with_error: bool = True) -> str:
    """done, or the status with how many seeds finished (and the first error)."""
    finished, total = len(variant.done), len(variant.runs)
    if variant.status == "done":
        return "done"
    text = f"{variant.status} ({finished}/{total})"
    return f"{text}: {variant.errors[0]}" if variant.errors and with_error else text


def correction_text(results: Results) -> str:
    """Which correction, for how many comparisons."""
    count = results.comparisons
    what = f"{count} comparison{'s' if count != 1 else ''} with the baseline"
    if results.correction == "none":
        return f"p-values not corrected for multiple comparisons ({what}: expect about {count} × 0.05 false alarms)"
    name = {"holm": "Holm", "bonferroni": "Bonferroni"}[results.correction]
    return f"p-values adjusted with {name}'s correction for {what}"


def headline(results: Results) -> list[str]:
    """The answer in a few sentences: the best variant, which variants beat or lose to the baseline (adjusted
    p), and every caveat the reader must not miss."""
    metric = results.metric
    lines = _state_lines(results)
    ranked = [v for v in results.ranked() if v.rank is not None]
    if not ranked:
        return lines + ["No run has finished yet."]
    best = ranked[0]
    lines.append(
        f"Best: {best.id} with {metric} {fmt_spread(metric, best.spread)} over {best.spread.n} run(s)."
    )
    baseline = results.baseline
    if not baseline.values:
        lines.append(f"The baseline {baseline.id} has no finished run: no variant can be tested against it.")
    if not results.verdicts_possible:
        lines.append(
            f"No verdict is possible with {results.seeds_per_variant} seed(s) per variant (at least "
            f"{stats.MIN_SEEDS_FOR_VERDICT} are needed): the numbers below are estimates only."
        )
    else:
        p_name = "p" if results.correction == "none" else "adjusted p"
        accuracy = is_accuracy(metric)

        def named(label: str) -> str:
            return ", ".join(
                f"{v.id} ({rule.phrase(v.verdict, accuracy, p_name)})"
                for v in results.variants
                if v.verdict is not None and verdict(results, v) == label
            )

        for label, sentence in (
            (rule.BETTER, f"Significantly better than {baseline.id}"),
            (rule.WORSE, f"Significantly worse than {baseline.id}"),
            (rule.TEST_SET_TOO_SMALL, "Consistent over seeds, but the test set cannot resolve it"),
            (rule.UNCLEAR, f"No clear difference from {baseline.id}"),
        ):
            names = named(label)
            if names:
                lines.append(f"{sentence}: {names}.")
        if results.comparisons:
            lines.append(
                f"Verdicts at {p_name} < {stats.SIGNIFICANCE}, each interval at the level that matches its "
                f"{p_name} (it excludes 0 exactly when the verdict is better or worse): {correction_text(results)}."
            )
    failed = [v.id for v in results.variants if v.status == "failed"]
    if failed:
        lines.append(f"Failed (no seed finished): {', '.join(failed)}.")
    return lines + test_size_lines(results) + tuned_lines(results)


def _state_lines(results: Results) -> list[str]:
    """A study still running, or runs deleted since they ran."""
    lines = []
    if results.in_progress:
        lines.append("This study is still in progress (a compare holds its lock): the results are partial.")
    missing = results.missing
    if missing:
        names = ", ".join(f"{run.path.parent.name}/{run.name}" for run in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        lines.append(
            f"{len(missing)} run(s) are missing (their folders were deleted): {names}{more}; "
            "the report uses what is left."
        )
    return lines


def test_size_lines(results: Results) -> list[str]:
    """When the test set is too small to resolve the observed differences of test accuracy (the verdict's
    test_set_resolves, kaizen.study.verdict). Every seed is tested on the same images, so more seeds do not
    shrink the test set's own sampling error."""
    n = results.test_size
    if results.metric != "test.acc" or not n or not results.baseline.values:
        return []
    unresolved = [
        v for v in results.variants if v.verdict is not None and v.verdict.test_set_resolves is False
    ]
    if not unresolved:
        return []
    small = [v.id for v in unresolved]
    reasons = []
    if any(v.examples is not None for v in unresolved):
        reasons.append("the interval over test examples and seeds contains 0")
    if any(v.examples is None for v in unresolved):
        reasons.append("the difference is under two standard errors of a difference of two accuracies on it")
    accuracy = results.baseline.spread.mean
    return [
        f"The test set has {n:,} images (one image = {100 / n:.2f} points; a single run's accuracy has a "
        f"sampling error of ±{100 * math.sqrt(accuracy * (1 - accuracy) / n):.2f} points, which more seeds do "
        f"not reduce): it is too small to resolve the difference of {', '.join(small)} from the baseline "
        f"({'; '.join(reasons)}); a larger test set (e.g. mnist-10k) would decide it."
    ]


def tuned_lines(results: Results) -> list[str]:
    """The nuisance values chosen per variant by --tune, and what each search did: its trials by state
    (complete, pruned, failed), the finalists confirmed on more seeds and why the chosen one won."""
    tuned = results.study.get("tuned")
    if not tuned:
        return []
    searches = tuned.get("searches") or {}  # studies written before this record have none

    def chosen_text(variant: str, values: dict) -> str:
        text = f"{variant}: " + ", ".join(f"{key}={value}" for key, value in values.items())
        search = searches.get(variant)
        if search:
            states = ", ".join(f"{number} {state}" for state, number in search["trials"].items())
            text += f" ({sum(search['trials'].values())} trials: {states}; chosen: {search['why']})"
        return text

    chosen = "; ".join(chosen_text(variant, values) for variant, values in tuned["chosen"].items())
    confirmed = tuned.get("confirmed")  # studies written before the confirmation step have none
    if confirmed and confirmed.get("rule") == "stable":
        how = (
            f"; the best {confirmed['trials']} complete trials of each re-run on {confirmed['more_seeds']} more "
            "seeds, a finalist with a collapsed seed rejected and the best mean − std chosen"
        )
    elif confirmed:
        how = (
            f"; the best {confirmed['trials']} trials of each re-run on {confirmed['more_seeds']} more seeds, the "
            "best mean chosen"
        )
    else:
        how = ""
    return [
        f"Tuned per variant on the validation split ({tuned['trials']} trials of {', '.join(tuned['space'])} "
        f"each{how}): {chosen}."
    ]


def variance_lines(results: Results) -> list[str]:
    """Split vs initialisation standard deviations, when split seeds vary."""
    rows = [(v.id, v.components) for v in results.variants if v.components is not None]
    if not rows:
        return []
    unit = 100 if is_accuracy(results.metric) else 1
    suffix = " points" if unit == 100 else ""
    return [
        f"{name}: split std {split * unit:.2f}{suffix}, initialisation/order std {init * unit:.2f}{suffix}"
        for name, (split, init) in rows
    ]


def advisor_lines(results: Results) -> list[str]:
    """Seeds per variant that would detect each observed difference with 80% power."""
    lines = []
    for variant in results.variants:
        if variant.difference is None or not variant.values:
            continue
        needed = variant.seeds_needed
        diff = fmt_diff(results.metric, variant.difference.diff)
        if needed is None:
            lines.append(f"{variant.id} ({diff}): no number of seeds up to 1,000 would detect it reliably")
        else:
            lines.append(
                f"{variant.id} ({diff}): {needed} seeds for 80% power (this study has {results.seeds_per_variant})"
            )
    return lines


# ----------------------------------------------------------------------------------------- table


def table_rows(results: Results) -> list[dict[str, str]]:
    """One row of display strings per variant, best first."""
    metric = results.metric
    rows = []
    for variant in results.ranked():
        difference = variant.difference or stats.NO_DIFFERENCE
        examples = variant.examples
        rows.append(
            {
                "rank": str(variant.rank) if variant.rank else "—",
                "variant": variant.id + (" (baseline)" if variant.id == results.baseline.id else ""),
                "runs": f"{len(variant.done)}/{len(variant.runs)}",
                metric: fmt_spread(metric, variant.spread),
                "95% CI": fmt_interval(metric, variant.spread.ci_low, variant.spread.ci_high),
                "Δ vs baseline": fmt_diff(metric, difference.diff),
                "Δ CI (matches p adj)": fmt_diff_interval(metric, difference.ci_low, difference.ci_high),
                "CI level": f"{difference.confidence:.1%}".replace(".0%", "%")
                if math.isfinite(difference.ci_low)
                else "—",
                "p": fmt_p(difference.p_value),
                "p adj": fmt_p(difference.p_adj),
                "P(beats)": fmt_number(difference.p_beats),
                "Δ CI (test examples)": fmt_diff_interval(metric, examples[1], examples[2])
                if examples
                else "—",
                "test": difference.test,
                "g": fmt_number(difference.hedges_g),
                "verdict": verdict(results, variant),
                "gap": fmt_gap(variant.gap),
                "s/run": fmt_number(variant.train_seconds, 1),
                "status": status_text(variant),
            }
        )
    return rows


# ----------------------------------------------------------------------------------------- study facts


def describe_study(results: Results) -> list[str]:
    """Setup, metric, baseline, seeds, split seeds, runs finished, throughput."""
    study = results.study
    runs = len(study["variants"]) * results.seeds_per_variant
    done = sum(len(v.done) for v in results.variants)
    splits = study.get("split_seeds")
    split_text = (
        f" · split seeds: {', '.join(str(s) for s in splits)}" if splits else " · one shared data split"
    )
    return [
        f"setup: {study.get('description') or study['base_config'].get('name') or 'the given config'}",
        f"metric: {results.metric} ({'higher' if results.higher_is_better else 'lower'} is better) · "
        f"baseline: {results.baseline.id} · seeds: {', '.join(str(s) for s in study['seeds'])}{split_text}",
        f"runs: {done} of {runs} finished · updated {study.get('updated', '?')}"
        + (" · in progress" if results.in_progress else ""),
        f"statistics: {results.interval} intervals · {correction_text(results)}",
    ] + _throughput_lines(results)


def _throughput_lines(results: Results) -> list[str]:
    """The last session's throughput (throughput.json), when the study has one."""
    record = throughput.read(results.path)
    if record is None:
        return []
    return [f"throughput (session of {record.get('at', '?')}): {throughput.describe(record)}"]


def value_text(value: Any) -> str:
    """A config value as shown in the config difference."""
    return "null" if value is None else str(value)


def failures(results: Results) -> list[list[str]]:
    """(variant, run, status, error) of every run that failed, stopped or went missing."""
    return [
        [variant.id, run.name, run.status, run.error or ("folder deleted" if run.status == "missing" else "")]
        for variant in results.variants
        for run in variant.runs
        if run.status in ("failed", "stopped", "missing")
    ]


def method_note(results: Results) -> list[str]:
    """The method section: how every number was computed."""
    interval = (
        "a percentile bootstrap over seeds (4,000 resamples of the seeds, the 2.5th and 97.5th percentiles "
        "of the resampled mean)"
        if results.interval == "bootstrap"
        else "the t-distribution (n − 1 degrees of freedom)"
    )
    splits = (
        "Each variant ran once per (split seed, seed): data.split_seed varies the test/validation split, "
        "train.seed the initialisation and data order; the spread is split into the two components by one-way "
        "random-effects ANOVA (seeds nested in splits)."
        if results.study.get("split_seeds")
        else "Each variant ran once per seed (train.seed); all seeds share the data split."
    )
    if results.study.get("seeds_auto_max"):
        splits += (
            f" Seeds were added in rounds (--seeds auto:{results.study['seeds_auto_max']}) until every variant's "
            "interval separated from the baseline: stopping on separation makes a false verdict somewhat more "
            "likely than the nominal 5%."
        )
    return [
        f"{splits} Mean ± sample standard deviation over runs; the 95% interval uses {interval}, and an "
        "accuracy's interval is clipped to [0%, 100%].",
        "The difference from the baseline (variant − baseline) is tested with a paired t-test when both "
        "finished the same seeds (same seed = same data order), else with Welch's t-test; its interval comes "
        "from the same test, at the level that matches the adjusted p-value (1 − 0.05 · p / p adj: 95% for "
        "one comparison, 97.5% for two under Bonferroni), so it excludes 0 exactly when the adjusted p < 0.05. "
        f"{correction_text(results)[0].upper()}{correction_text(results)[1:]}; Holm's step-down method keeps the chance of any false "
        "'better'/'worse' at 5% and is never weaker than Bonferroni. One rule (kaizen.study.verdict) gives "
        f"every verdict: at least {stats.MIN_SEEDS_FOR_VERDICT} seeds per variant, then better/worse when the "
        "adjusted p < 0.05 and, for test accuracy, the test set resolves the difference (else 'test set too "
        "small'); otherwise 'no clear difference', with the difference the study could have detected with 80% "
        "power.",
        "P(beats) is the share of (variant seed, baseline seed) pairs in which the variant's run is better "
        "(ties count half). Where the runs kept their per-image test results (test_correct.npy), a paired "
        "bootstrap over test examples and seeds (4,000 resamples: seeds with their pairs, then test images, the "
        "same images for both) gives 'Δ CI (test examples)', at the level of the seeds' interval: it shows whether "
        "the test set itself can resolve the difference.",
        "Hedges' g is the difference over the pooled standard deviation with the small-sample correction "
        "1 − 3/(4(n₁+n₂)−9) (|g| ≈ 0.2 small, 0.5 medium, 0.8 large). The seed advisor solves for the seeds "
        "a paired t-test at 0.05 needs for 80% power at the observed difference and spread of paired "
        "differences (noncentral t). Gap = final train accuracy − final validation accuracy. "
        "Time = training seconds per run (summary.json).",
    ]


def sections(results: Results) -> list[tuple[str, list[str]]]:
    """The report's sections after the figures that are lines of text: (title, lines), empty ones left out."""
    parts = [
        ("Sources of variance", variance_lines(results)),
        ("Seed advisor", advisor_lines(results)),
    ]
    return [(title, lines) for title, lines in parts if lines]
