"""results.csv: one row of raw numbers per variant."""

from __future__ import annotations

import csv
import io
import math

from kaizen.study import stats
from kaizen.study.report.text import verdict
from kaizen.study.results import Results

COLUMNS = (  # results.csv, in this order
    "rank",
    "variant",
    "baseline",
    "overrides",
    "status",
    "runs_done",
    "runs",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "diff_ci_level",
    "detectable_diff",
    "p",
    "p_adj",
    "correction",
    "comparisons",
    "interval",
    "p_beats",
    "examples_diff",
    "examples_ci_low",
    "examples_ci_high",
    "examples_p",
    "split_std",
    "init_std",
    "seeds_for_80_power",
    "test",
    "hedges_g",
    "verdict",
    "gap",
    "train_seconds_per_run",
    "values",
    "error",
)


def results_csv(results: Results) -> str:
    """results.csv: one row per variant with raw numbers (best first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for variant in results.ranked():
        writer.writerow(_row(results, variant))
    return out.getvalue()


def _row(results: Results, variant) -> dict[str, object]:
    """One variant's row of results.csv."""
    difference = variant.difference or stats.NO_DIFFERENCE
    examples = variant.examples or (math.nan,) * 4
    split_std, init_std = variant.components or (math.nan, math.nan)
    return {
        "rank": variant.rank or "",
        "variant": variant.id,
        "baseline": variant.id == results.baseline.id,
        "overrides": " ".join(variant.overrides),
        "status": variant.status,
        "runs_done": len(variant.done),
        "runs": len(variant.runs),
        "metric": results.metric,
        "mean": _csv_number(variant.spread.mean),
        "std": _csv_number(variant.spread.std),
        "ci_low": _csv_number(variant.spread.ci_low),
        "ci_high": _csv_number(variant.spread.ci_high),
        "diff": _csv_number(difference.diff),
        "diff_ci_low": _csv_number(difference.ci_low),
        "diff_ci_high": _csv_number(difference.ci_high),
        "diff_ci_level": _csv_number(difference.confidence) if variant.difference else "",
        "detectable_diff": _csv_number(difference.detectable),
        "p": _csv_number(difference.p_value),
        "p_adj": _csv_number(difference.p_adj),
        "correction": results.correction,
        "comparisons": results.comparisons,
        "interval": results.interval,
        "p_beats": _csv_number(difference.p_beats),
        "examples_diff": _csv_number(examples[0]),
        "examples_ci_low": _csv_number(examples[1]),
        "examples_ci_high": _csv_number(examples[2]),
        "examples_p": _csv_number(examples[3]),
        "split_std": _csv_number(split_std),
        "init_std": _csv_number(init_std),
        "seeds_for_80_power": variant.seeds_needed or "",
        "test": difference.test,
        "hedges_g": _csv_number(difference.hedges_g),
        "verdict": verdict(results, variant),
        "gap": _csv_number(variant.gap),
        "train_seconds_per_run": _csv_number(variant.train_seconds),
        "values": " ".join(
            f"{seed if split is None else f'{split}/{seed}'}:{value:.6g}"
            for (split, seed), value in variant.values.items()
        ),
        "error": variant.errors[0] if variant.errors else "",
    }


def _csv_number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""
