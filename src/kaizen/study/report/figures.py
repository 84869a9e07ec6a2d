"""The figures of a study report: bars.png, curves.png and datacurve.png."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter, ScalarFormatter

from kaizen.study.datacurve import Curve
from kaizen.study.report.text import fmt_value, is_accuracy, shown_interval
from kaizen.study.results import Results, VariantResult

DPI = 110


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(index % cmap.N) for index in range(count)]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


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
        metric_ax.yaxis.set_major_formatter(ScalarFormatter())
    fig.suptitle(f"data curve · {curve.reading.split(':')[0]}", fontsize=11)
    return _png(fig)
