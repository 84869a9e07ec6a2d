"""The report of a study: a terminal table, results.csv, report.md and a self-contained report.html.

Everything is read from the study directory (study.json and the run directories). The figures (bars.png:
the metric per variant with 95% intervals; curves.png: learning curves per variant, mean over seeds with a
±1 std band; datacurve.png for data curves) are written beside the report and embedded in the HTML as base64,
so report.html is one file that can be mailed. Each variant's doctor findings are included when
`kaizen.doctor.diagnose` exists.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from rich import box
from rich.table import Table

from kaizen.study import stats, throughput
from kaizen.study.datacurve import Curve, analyse
from kaizen.study.results import Results, VariantResult, collect
from kaizen.track import rundir

SIGNIFICANCE = 0.05
DPI = 110
METHOD_NOTE = (
    "Each variant ran once per seed (train.seed); all seeds share the data split. Mean ± sample standard "
    "deviation over seeds; the 95% interval uses the t-distribution (n − 1 degrees of freedom). The difference "
    "from the baseline (variant − baseline) is tested with a paired t-test when both finished the same seeds, "
    "else with Welch's t-test; its interval uses the same test's degrees of freedom. The effect size is Hedges' "
    "g: the difference over the pooled standard deviation, with the small-sample correction "
    "1 − 3/(4(n₁+n₂)−9) (|g| ≈ 0.2 small, 0.5 medium, 0.8 large). p-values are not corrected for multiple "
    "comparisons: with k variants expect about k × 0.05 false alarms. Gap = final train accuracy − final "
    "validation accuracy. Time = training seconds per run (summary.json)."
)


@dataclass
class Report:
    """The results and the files written for them."""

    results: Results
    files: list[Path]
    curve: Curve | None = None
    doctor_note: str = ""


def write_report(study_dir: Path | str) -> Report:
    """Collect a study's results and write results.csv, report.md, report.html and the figures."""
    results = collect(study_dir)
    path = results.path
    curve = analyse(results) if results.study.get("kind") == "datacurve" else None
    images = {"bars.png": bars_png(results), "curves.png": curves_png(results)}
    if curve is not None:
        images = {"datacurve.png": datacurve_png(curve, results), **images}
    for name, data in images.items():
        rundir.atomic_write_bytes(path / name, data)
    findings, doctor_note = doctor_findings(results)
    rundir.atomic_write_text(path / "results.csv", results_csv(results))
    rundir.atomic_write_text(
        path / "report.md", markdown(results, curve, list(images), findings, doctor_note)
    )
    rundir.atomic_write_text(path / "report.html", html_report(results, curve, images, findings, doctor_note))
    files = [
        path / "results.csv",
        path / "report.md",
        path / "report.html",
        *(path / name for name in images),
    ]
    return Report(results, files, curve, doctor_note)


# ----------------------------------------------------------------------------------------- formatting


def is_accuracy(metric: str) -> bool:
    """Whether a metric is an accuracy (shown in percent)."""
    return metric.endswith("acc")


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
    """[low, high] or — when undefined; an accuracy's interval is shown clipped to [0%, 100%]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    if is_accuracy(metric):
        low, high = max(low, 0.0), min(high, 1.0)
    return f"[{fmt_value(metric, low)}, {fmt_value(metric, high)}]"


def fmt_diff(metric: str, value: float) -> str:
    """A difference: percentage points for accuracies."""
    if not math.isfinite(value):
        return "—"
    return f"{value * 100:+.2f} pts" if is_accuracy(metric) else f"{value:+.4f}"


def fmt_diff_interval(metric: str, low: float, high: float) -> str:
    """The difference's interval, in the difference's units."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    if is_accuracy(metric):
        return f"[{low * 100:+.2f}, {high * 100:+.2f}]"
    return f"[{low:+.4f}, {high:+.4f}]"


def fmt_p(value: float) -> str:
    """A p-value."""
    if not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def fmt_number(value: float, digits: int = 2) -> str:
    """A plain number or —."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "—"


def fmt_gap(value: float) -> str:
    """The train - validation gap in points."""
    return f"{value * 100:+.1f} pts" if math.isfinite(value) else "—"


def verdict(results: Results, variant: VariantResult) -> str:
    """better / worse / no clear difference than the baseline (p < 0.05), or the variant's state."""
    if variant.id == results.baseline.id:
        return "baseline"
    if not variant.values:
        return {"incomplete": "not run", "done": "no metric"}.get(variant.status, variant.status)
    difference = variant.difference
    if difference is None or not math.isfinite(difference.p_value):
        return "no test"
    if difference.p_value >= SIGNIFICANCE:
        return "no clear difference"
    better = (difference.diff > 0) == results.higher_is_better
    return "better" if better else "worse"


def status_text(variant: VariantResult, with_error: bool = True) -> str:
    """done, or the status with how many seeds finished (and the first error)."""
    finished, total = len(variant.done), len(variant.runs)
    if variant.status == "done":
        return "done"
    text = f"{variant.status} ({finished}/{total})"
    return f"{text}: {variant.errors[0]}" if variant.errors and with_error else text


def headline(results: Results) -> list[str]:
    """The answer in a few sentences: the best variant, and which variants beat or lose to the baseline."""
    metric = results.metric
    ranked = [v for v in results.ranked() if v.rank is not None]
    if not ranked:
        return ["No run has finished yet."]
    best = ranked[0]
    lines = [f"Best: {best.id} with {metric} {fmt_spread(metric, best.spread)} over {best.spread.n} seed(s)."]
    if len(ranked) > 1:
        runner_up = ranked[1]
        against = stats.difference(runner_up.values, best.values)
        if math.isfinite(against.p_value):
            clearly = "significantly" if against.p_value < SIGNIFICANCE else "not significantly"
            lines[0] = lines[0][:-1] + (
                f"; {clearly} ahead of the runner-up {runner_up.id} "
                f"({fmt_diff(metric, against.diff)}, p {fmt_p(against.p_value)})."
            )
    baseline = results.baseline
    if not baseline.values:
        lines.append(f"The baseline {baseline.id} has no finished run: no variant can be tested against it.")
    for label in ("better", "worse"):
        names = [
            f"{v.id} ({fmt_diff(metric, v.difference.diff)}, p {fmt_p(v.difference.p_value)})"
            for v in results.variants
            if verdict(results, v) == label
        ]
        if names:
            lines.append(
                f"Significantly {label} than {baseline.id} (p < {SIGNIFICANCE}): {', '.join(names)}."
            )
    unclear = [v.id for v in results.variants if verdict(results, v) == "no clear difference"]
    if unclear:
        lines.append(f"No clear difference from {baseline.id}: {', '.join(unclear)}.")
    failed = [v.id for v in results.variants if v.status == "failed"]
    if failed:
        lines.append(f"Failed (no seed finished): {', '.join(failed)}.")
    return lines


def table_rows(results: Results) -> list[dict[str, str]]:
    """One row of display strings per variant, best first."""
    metric = results.metric
    rows = []
    for variant in results.ranked():
        difference = variant.difference
        rows.append(
            {
                "rank": str(variant.rank) if variant.rank else "—",
                "variant": variant.id + (" (baseline)" if variant.id == results.baseline.id else ""),
                "runs": f"{len(variant.done)}/{len(variant.runs)}",
                metric: fmt_spread(metric, variant.spread),
                "95% CI": fmt_interval(metric, variant.spread.ci_low, variant.spread.ci_high),
                "Δ vs baseline": fmt_diff(metric, difference.diff) if difference else "—",
                "Δ 95% CI": fmt_diff_interval(metric, difference.ci_low, difference.ci_high)
                if difference
                else "—",
                "p": fmt_p(difference.p_value) if difference else "—",
                "test": difference.test if difference else "",
                "g": fmt_number(difference.hedges_g) if difference else "—",
                "verdict": verdict(results, variant),
                "gap": fmt_gap(variant.gap),
                "s/run": fmt_number(variant.train_seconds, 1),
                "status": status_text(variant),
            }
        )
    return rows


def render_table(results: Results, width: int = 120) -> Table:
    """The results as a compact rich table for the terminal (accuracies in %; errors are listed by the caller).

    Below 100 columns the effect size and the time per run are left out, to keep the variant names readable.
    """
    metric = results.metric
    scale, digits = (100, 2) if is_accuracy(metric) else (1, 4)

    def number(value: float, sign: str = "") -> str:
        return f"{value * scale:{sign}.{digits}f}" if math.isfinite(value) else "—"

    unit = " (%)" if is_accuracy(metric) else ""
    table = Table(
        title=f"{results.study.get('title', 'study')} · {metric}{unit}",
        title_justify="left",
        caption="Δ: vs the baseline (base) · n.s.: not significant (p ≥ 0.05) · p: paired t-test (same "
        "seeds) or Welch · g: Hedges' g · s/run: train seconds per run",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    wide = width >= 100
    longest = max((len(v.id) for v in results.variants), default=8) + 2
    table.add_column("#", justify="right")
    table.add_column("variant", min_width=min(longest, 30 if wide else 18), overflow="fold")
    headers = ["n", "mean ± std", "95% CI", "Δ", "p"] + (["g"] if wide else []) + ["verdict"]
    for header in headers + (["s/run"] if wide else []):
        table.add_column(header, justify="left" if header == "verdict" else "right", no_wrap=True)
    short = {"no clear difference": "n.s.", "baseline": "base"}
    for variant in results.ranked():
        spread, difference = variant.spread, variant.difference
        low, high = shown_interval(metric, spread) if spread.n > 1 else (math.nan, math.nan)
        mean = number(spread.mean) + (f" ± {number(spread.std)}" if math.isfinite(spread.std) else "")
        state = verdict(results, variant)
        cells = [
            str(variant.rank or "—"),
            variant.id,
            f"{len(variant.done)}/{len(variant.runs)}",
            mean if spread.n else "—",
            f"{number(low)}–{number(high)}" if math.isfinite(low) else "—",
            number(difference.diff, "+") if difference else "—",
            fmt_p(difference.p_value) if difference else "—",
        ]
        cells += [fmt_number(difference.hedges_g) if difference else "—"] if wide else []
        cells += [short.get(state, state)] + ([fmt_number(variant.train_seconds, 1)] if wide else [])
        table.add_row(*cells, style={"better": "green", "worse": "red", "failed": "red"}.get(state))
    return table


def results_csv(results: Results) -> str:
    """results.csv: one row per variant with raw numbers (best first)."""
    out = io.StringIO()
    columns = [
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
        "p_value",
        "test",
        "hedges_g",
        "verdict",
        "gap",
        "train_seconds_per_run",
        "values",
        "error",
    ]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for variant in results.ranked():
        difference = variant.difference or stats.Difference(
            math.nan, math.nan, math.nan, math.nan, "", math.nan
        )
        writer.writerow(
            {
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
                "p_value": _csv_number(difference.p_value),
                "test": difference.test,
                "hedges_g": _csv_number(difference.hedges_g),
                "verdict": verdict(results, variant),
                "gap": _csv_number(variant.gap),
                "train_seconds_per_run": _csv_number(variant.train_seconds),
                "values": " ".join(f"{seed}:{value:.6g}" for seed, value in variant.values.items()),
                "error": variant.errors[0] if variant.errors else "",
            }
        )
    return out.getvalue()


def _csv_number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""


# -------------------------------------------------------------------------------------------- figures


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(index % cmap.N) for index in range(count)]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def shown_interval(metric: str, spread: stats.Spread) -> tuple[float, float]:
    """The 95% interval as drawn: an accuracy's is clipped to [0, 1]; the mean itself when undefined."""
    if not math.isfinite(spread.ci_low):
        return spread.mean, spread.mean
    if is_accuracy(metric):
        return max(spread.ci_low, 0.0), min(spread.ci_high, 1.0)
    return spread.ci_low, spread.ci_high


def bars_png(results: Results) -> bytes:
    """The metric of each variant: mean as a bar, 95% interval as a whisker, each seed as a dot."""
    metric, variants = results.metric, results.variants
    colours = _colours(len(variants))
    fig = Figure(figsize=(9, 1.2 + 0.5 * len(variants)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    values = [value for v in variants for value in v.values.values()]
    values += [x for v in variants if v.values for x in shown_interval(metric, v.spread)]
    if values:
        low, high = min(values), max(values)
        pad = max((high - low) * 0.15, 0.005 if is_accuracy(metric) else 1e-3)
        left, right = low - pad, high + pad
        if is_accuracy(metric):
            left = max(0.0, left)
    else:
        left, right = 0.0, 1.0
    for row, (variant, colour) in enumerate(zip(variants, colours)):
        baseline = variant.id == results.baseline.id
        if not variant.values:
            ax.text(left, row, f"  {variant.status}", va="center", color="tab:red", fontsize=9)
            continue
        spread = variant.spread
        ax.barh(
            row,
            spread.mean - left,
            left=left,
            color=colour,
            alpha=0.55 if not baseline else 0.8,
            height=0.6,
            edgecolor="black" if baseline else colour,
            linewidth=1.2 if baseline else 0.5,
        )
        ci_low, ci_high = shown_interval(metric, spread)
        if ci_high > ci_low:
            ax.errorbar(
                spread.mean,
                row,
                xerr=[[spread.mean - ci_low], [ci_high - spread.mean]],
                fmt="none",
                ecolor="black",
                capsize=4,
                linewidth=1.2,
            )
        seeds = list(variant.values.values())
        jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
        ax.scatter(seeds, row + np.asarray(jitter), s=14, color="black", zorder=3, alpha=0.7)
        label_at = max(ci_high, max(seeds))
        ax.text(label_at, row, f"  {fmt_value(metric, spread.mean)}", va="center", fontsize=8)
    if results.baseline.values:
        ax.axvline(results.baseline.spread.mean, color="0.35", linestyle="--", linewidth=0.9, zorder=0)
    ax.set_yticks(
        range(len(variants)),
        [v.id + (" (baseline)" if v.id == results.baseline.id else "") for v in variants],
    )
    ax.invert_yaxis()
    ax.set_xlim(left, right + (right - left) * 0.12)  # room for the value labels
    if is_accuracy(metric):
        ticks = [tick for tick in ax.get_xticks() if left <= tick <= 1.0 + 1e-9]  # none beyond 100%
        ax.set_xticks(ticks)
        ax.set_xlim(left, right + (right - left) * 0.12)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax.set_xlabel(metric)
    ax.grid(True, axis="x", alpha=0.3)
    seeds = len(results.study["seeds"])
    ax.set_title(
        f"{metric} per variant · mean, 95% CI (whisker) and each of {seeds} seed(s) (dots)", fontsize=10
    )
    return _png(fig)


def _mean_curve(
    variant: VariantResult, split: str, key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(epochs, mean, std) over the variant's finished seeds; std 0 where only one seed reached an epoch."""
    by_epoch: dict[int, list[float]] = {}
    for run in variant.done:
        for row in run.metrics:
            if row["split"] == split and math.isfinite(row[key]):
                by_epoch.setdefault(row["epoch"], []).append(row[key])
    if not by_epoch:
        return None
    epochs = np.array(sorted(by_epoch))
    mean = np.array([np.mean(by_epoch[epoch]) for epoch in epochs])
    std = np.array([np.std(by_epoch[epoch], ddof=1) if len(by_epoch[epoch]) > 1 else 0.0 for epoch in epochs])
    return epochs, mean, std


def curves_png(results: Results) -> bytes:
    """Learning curves: train loss, validation loss and validation accuracy per variant (mean ± 1 std)."""
    has_val = any(row["split"] == "val" for v in results.variants for run in v.done for row in run.metrics)
    panels = [("train", "loss", "train loss")]
    panels += (
        [("val", "loss", "validation loss"), ("val", "acc", "validation accuracy")]
        if has_val
        else [("train", "acc", "train accuracy")]
    )
    fig = Figure(figsize=(4.2 * len(panels), 4.3), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels))
    colours = _colours(len(results.variants))
    handles = []
    for variant, colour in zip(results.variants, colours):
        baseline = variant.id == results.baseline.id
        for ax, (split, key, _) in zip(axes, panels):
            curve = _mean_curve(variant, split, key)
            if curve is None:
                continue
            epochs, mean, std = curve
            (line,) = ax.plot(
                epochs,
                mean,
                color=colour,
                linewidth=2.3 if baseline else 1.4,
                label=variant.id + (" (baseline)" if baseline else ""),
            )
            ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
            if ax is axes[0]:
                handles.append(line)
    for ax, (_, key, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if key == "loss" and ax.has_data():
            ax.set_yscale("log")
        if key == "acc":
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if not handles:
        axes[0].text(0.5, 0.5, "no finished run", ha="center", va="center", transform=axes[0].transAxes)
    else:
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=9, frameon=False
        )
    fig.suptitle(
        f"learning curves · mean over seeds, band ±1 std · {results.study.get('title', '')}", fontsize=11
    )
    return _png(fig)


def datacurve_png(curve: Curve, results: Results) -> bytes:
    """The metric and the train - validation gap against the number of training examples (95% intervals)."""
    fig = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    metric_ax, gap_ax = fig.subplots(1, 2)
    points = [p for p in curve.points if p.spread.n and math.isfinite(p.examples)]
    for ax, pick, title in (
        (metric_ax, lambda p: p.spread, f"{curve.metric} (mean, 95% CI)"),
        (gap_ax, lambda p: p.gap, "train − validation accuracy gap (mean, 95% CI)"),
    ):
        xs = np.array([p.examples for p in points])
        spreads = [pick(p) for p in points]
        means = np.array([s.mean for s in spreads])
        intervals = [shown_interval(curve.metric if ax is metric_ax else "gap", s) for s in spreads]
        lows = np.array([low for low, _ in intervals])
        highs = np.array([high for _, high in intervals])
        if len(xs):
            ax.fill_between(xs, lows, highs, color="tab:blue", alpha=0.18, linewidth=0)
            ax.errorbar(xs, means, yerr=[means - lows, highs - means], fmt="o-", color="tab:blue", capsize=4)
            for point, x, y in zip(points, xs, means):
                ax.annotate(
                    f"{point.fraction:g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(7, 3),
                    ha="left",
                    fontsize=8,
                    color="0.35",
                )
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:,.0f}" for x in xs])
            ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training examples (log scale; labels: fraction)")
        ax.grid(True, alpha=0.3)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if not is_accuracy(curve.metric):
        metric_ax.yaxis.set_major_formatter(_plain_formatter())
    fig.suptitle(f"data curve · {curve.reading.split(':')[0]}", fontsize=11)
    return _png(fig)


def _plain_formatter():
    from matplotlib.ticker import ScalarFormatter

    return ScalarFormatter()


# --------------------------------------------------------------------------------------------- doctor


def doctor_findings(results: Results) -> tuple[dict[str, list[dict[str, Any]]] | None, str]:
    """Each variant's doctor findings, grouped over seeds: ({variant: [finding]}, note), or (None, why not).

    A finding is {severity, title, evidence (of the first seed showing it), seeds (how many showed it)}.
    """
    try:
        from kaizen.doctor import diagnose
    except Exception:  # not built yet, or broken: the report goes on without it
        return None, "doctor not available"
    grouped: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for variant in results.variants:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for run in variant.runs:
            if run.status == "not run" or not (run.path / "meta.json").is_file():
                continue
            try:
                findings = diagnose(run.path)
            except Exception as error:  # a finding the doctor cannot make must not lose the report
                problems.append(f"{variant.id}/seed{run.seed}: {type(error).__name__}: {error}")
                continue
            for finding in findings:
                key = (str(getattr(finding, "severity", "")), str(getattr(finding, "title", finding)))
                entry = found.setdefault(
                    key,
                    {
                        "severity": key[0],
                        "title": key[1],
                        "evidence": str(getattr(finding, "evidence", "")),
                        "seeds": 0,
                    },
                )
                entry["seeds"] += 1
        grouped[variant.id] = list(found.values())
    note = f"doctor could not read {len(problems)} run(s): {problems[0]}" if problems else ""
    return grouped, note


# ------------------------------------------------------------------------------------------- markdown


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _describe_study(results: Results) -> list[str]:
    study = results.study
    runs = len(study["variants"]) * len(study["seeds"])
    done = sum(len(v.done) for v in results.variants)
    return [
        f"setup: {study.get('description') or study['base_config'].get('name') or 'the given config'}",
        f"metric: {results.metric} ({'higher' if results.higher_is_better else 'lower'} is better) · "
        f"baseline: {results.baseline.id} · seeds: {', '.join(str(s) for s in study['seeds'])}",
        f"runs: {done} of {runs} finished · updated {study.get('updated', '?')}",
    ] + _throughput_lines(results)


def _throughput_lines(results: Results) -> list[str]:
    """The last session's throughput (throughput.json), when the study has one."""
    record = throughput.read(results.path)
    if record is None:
        return []
    return [f"throughput (session of {record.get('at', '?')}): {throughput.describe(record)}"]


def _value_text(value: Any) -> str:
    return "null" if value is None else str(value)


def markdown(
    results: Results,
    curve: Curve | None,
    images: list[str],
    findings: dict[str, list[dict[str, Any]]] | None,
    doctor_note: str,
) -> str:
    """report.md: the same content as the HTML, with the figures as links to the PNG files beside it."""
    study = results.study
    parts = [f"# {study.get('title', 'study')}", ""]
    if study.get("question"):
        parts += [f"**{study['question']}**", ""]
    parts += [f"- {line}" for line in _describe_study(results)] + [""]
    parts += ["## Answer", ""]
    if curve is not None:
        parts += [f"**{curve.reading}**", ""]
    parts += [f"- {line}" for line in headline(results)] + [""]
    rows = table_rows(results)
    parts += [
        "## Results",
        "",
        _md_table(list(rows[0]), [list(r.values()) for r in rows]) if rows else "",
        "",
    ]
    parts += ["## Figures", ""] + [f"![{name}]({name})" for name in images] + [""]
    parts += ["## Config difference from the baseline", ""]
    for variant in results.variants:
        if variant.id == results.baseline.id:
            continue
        diff = variant.config_diff
        parts += [
            f"**{variant.id}**: "
            + (", ".join(f"`{k}` {_value_text(a)} → {_value_text(b)}" for k, a, b in diff) or "same config")
        ]
        parts += [""]
    parts += ["## Doctor", ""]
    if findings is None:
        parts += [f"_{doctor_note}_", ""]
    else:
        if doctor_note:
            parts += [f"_{doctor_note}_", ""]
        for variant in results.variants:
            entries = findings.get(variant.id, [])
            parts += [f"**{variant.id}**:" + ("" if entries else " no findings")]
            parts += [
                f"- {e['severity']}: {e['title']} ({e['seeds']}/{len(variant.runs)} seeds) — {e['evidence']}"
                for e in entries
            ]
            parts += [""]
    failures = _failures(results)
    if failures:
        parts += ["## Failures", "", _md_table(["variant", "seed", "status", "error"], failures), ""]
    parts += ["## Method", "", METHOD_NOTE, ""]
    return "\n".join(parts)


def _failures(results: Results) -> list[list[str]]:
    return [
        [variant.id, str(run.seed), run.status, run.error or ""]
        for variant in results.variants
        for run in variant.runs
        if run.status in ("failed", "stopped")
    ]


# ----------------------------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1180px;margin:0 auto;padding:28px 32px 60px;background:#fff;min-height:100vh}
h1{margin:0 0 6px;font-size:26px}h2{margin:34px 0 10px;font-size:19px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.question{font-size:17px;color:#33404d;margin:4px 0 10px}.meta{color:#5b6672;font-size:13px;line-height:1.6}
.answer{background:#eef6ff;border-left:4px solid #2f7bd8;padding:10px 16px;margin:18px 0;border-radius:4px}
.answer p{margin:5px 0}.reading{font-weight:600;font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:6px 0;width:100%}
th,td{border-bottom:1px solid #e6e9ed;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;white-space:nowrap}td{overflow-wrap:anywhere}td.nowrap{white-space:nowrap}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.baseline td{background:#fafbe8}tr.failed td{background:#fdeeee}
.tag{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;white-space:nowrap}
.better{background:#d9f2dd;color:#17692b}.worse{background:#fbdcdc;color:#9c1c1c}.failed{background:#fbdcdc;color:#9c1c1c}
.same{background:#eceff2;color:#4a5560}.base{background:#f3f0c9;color:#6b5e00}
figure{margin:14px 0}img{display:block;max-width:100%;border:1px solid #e3e6ea;border-radius:4px;margin:8px auto}
figcaption{text-align:center}
code{background:#f1f3f6;padding:1px 4px;border-radius:3px;font-size:12px}
.error{color:#9c1c1c;font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-word}
.note{color:#5b6672;font-size:13px;line-height:1.55}
"""

_TAGS = {"better": "better", "worse": "worse", "baseline": "base", "failed": "failed"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(
    header: list[str], rows: list[list[str]], row_class: Callable[[int], str] = lambda i: ""
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f'<tr class="{row_class(i)}">' + "".join(row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(
    results: Results,
    curve: Curve | None,
    images: dict[str, bytes],
    findings: dict[str, list[dict[str, Any]]] | None,
    doctor_note: str,
) -> str:
    """report.html: one self-contained page (inline CSS, figures as base64 data URIs, no links to files)."""
    study = results.study
    title = study.get("title", "study")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>kaizen · {_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
    ]
    if study.get("question"):
        out.append(f'<p class="question">{_e(study["question"])}</p>')
    out.append('<div class="meta">' + "<br>".join(_e(line) for line in _describe_study(results)) + "</div>")
    out.append('<div class="answer">')
    if curve is not None:
        out.append(f'<p class="reading">{_e(curve.reading)}</p>')
    out += [f"<p>{_e(line)}</p>" for line in headline(results)]
    out.append("</div>")

    out.append("<h2>Results</h2>")
    rows = table_rows(results)
    numeric = {
        results.metric,
        "95% CI",
        "Δ vs baseline",
        "Δ 95% CI",
        "p",
        "g",
        "gap",
        "s/run",
        "runs",
        "rank",
    }
    columns = [column for column in rows[0] if column != "status"] if rows else []
    cells, classes = [], []
    for row, variant in zip(rows, results.ranked()):
        line = []
        for column in columns:
            text = row[column]
            if column == "verdict":
                line.append(f'<td><span class="tag {_TAGS.get(text, "same")}">{_e(text)}</span></td>')
            else:
                kind = "num" if column in numeric else "nowrap" if column == "test" else ""
                line.append(f'<td class="{kind}">{_e(text)}</td>')
        cells.append(line)
        failed = variant.status == "failed"
        classes.append("baseline" if variant is results.baseline else "failed" if failed else "")
        if variant.status != "done":  # the state and the first error on a line of its own, under the row
            cells.append(
                [f'<td></td><td colspan="{len(columns) - 1}" class="error">{_e(status_text(variant))}</td>']
            )
            classes.append(classes[-1])
    out.append(_html_table(columns, cells, lambda index: classes[index]))
    out.append(
        f'<p class="note">Δ: {"percentage points" if is_accuracy(results.metric) else "difference"} '
        "against the baseline; p: two-sided t-test; g: Hedges' g. See Method below.</p>"
    )

    out.append("<h2>Figures</h2>")
    captions = {
        "datacurve.png": "The metric and the train/validation gap against training-set size.",
        "bars.png": "The metric per variant: bar = mean, whisker = 95% confidence interval, dots = seeds; "
        "dashed line = baseline mean.",
        "curves.png": "Learning curves per variant: mean over seeds, shaded band = ±1 standard deviation.",
    }
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        out.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{encoded}">')
        out.append(f'<figcaption class="note">{_e(captions.get(name, name))}</figcaption></figure>')

    out.append("<h2>Config difference from the baseline</h2>")
    diff_rows = []
    for variant in results.variants:
        if variant.id == results.baseline.id:
            continue
        if not variant.config_diff:
            diff_rows.append(
                [f"<td>{_e(variant.id)}</td>", "<td>—</td>", "<td>same config</td>", "<td></td>"]
            )
        for index, (key, base_value, value) in enumerate(variant.config_diff):
            diff_rows.append(
                [
                    f"<td>{_e(variant.id) if index == 0 else ''}</td>",
                    f"<td><code>{_e(key)}</code></td>",
                    f"<td>{_e(_value_text(base_value))}</td>",
                    f"<td><b>{_e(_value_text(value))}</b></td>",
                ]
            )
    out.append(_html_table(["variant", "key", f"baseline ({results.baseline.id})", "variant"], diff_rows))

    out.append("<h2>Doctor findings</h2>")
    if findings is None:
        out.append(
            f'<p class="note">{_e(doctor_note)}: this kaizen has no <code>kaizen.doctor</code>; once it has, '
            "each variant's diagnosis appears here.</p>"
        )
    else:
        if doctor_note:
            out.append(f'<p class="note">{_e(doctor_note)}</p>')
        doctor_rows = []
        for variant in results.variants:
            entries = findings.get(variant.id, [])
            if not entries:
                doctor_rows.append(
                    [
                        f"<td>{_e(variant.id)}</td>",
                        "<td></td>",
                        "<td>no findings</td>",
                        "<td></td>",
                        "<td></td>",
                    ]
                )
            for index, entry in enumerate(entries):
                doctor_rows.append(
                    [
                        f"<td>{_e(variant.id) if index == 0 else ''}</td>",
                        f"<td>{_e(entry['severity'])}</td>",
                        f"<td>{_e(entry['title'])}</td>",
                        f'<td class="num">{entry["seeds"]}/{len(variant.runs)}</td>',
                        f"<td>{_e(entry['evidence'])}</td>",
                    ]
                )
        out.append(
            _html_table(["variant", "severity", "finding", "seeds", "evidence (first seed)"], doctor_rows)
        )

    failures = _failures(results)
    if failures:
        out.append("<h2>Failures</h2>")
        out.append(
            _html_table(
                ["variant", "seed", "status", "error"],
                [
                    [
                        f"<td>{_e(a)}</td>",
                        f'<td class="num">{_e(b)}</td>',
                        f"<td>{_e(c)}</td>",
                        f'<td class="error">{_e(d)}</td>',
                    ]
                    for a, b, c, d in failures
                ],
            )
        )
    out.append("<h2>Method</h2>")
    out.append(f'<p class="note">{_e(METHOD_NOTE)}</p>')
    out.append(
        f'<p class="note">Study directory: <code>{_e(results.path)}</code> · run directories under '
        "<code>runs/&lt;variant&gt;/seed&lt;k&gt;/</code> · made by kaizen.</p>"
    )
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
