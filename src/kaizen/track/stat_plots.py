"""Pictures of a run's per-layer statistics (stats.jsonl): gradients.png and activations.png.

gradients.png is the vanishing-gradient picture: the gradient norm of each dense/conv layer over the epochs
(log scale, coloured from the input side to the output side), the same norms against depth at the first and
the last epoch (a slope down towards the input means the gradient fades on its way back), and each layer's
update-to-weight ratio. activations.png shows the distribution of each activation layer's output at the first
and the last epoch, with its dead or saturated fraction. Built like plots.py: `Figure` objects, atomic writes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from kaizen.track.plots import CURVES_DPI, _save_atomic

MAX_HISTOGRAM_PANELS = 12
RANGE_MARGIN = 0.04  # of the saturation bounds' width, on each side: the bounded outputs just past them show


def plot_stats(records: list[dict[str, Any]], out_dir: Path, title: str = "") -> list[Path]:
    """Draw gradients.png and activations.png into `out_dir` from stats.jsonl records; return the paths written.

    A picture whose records are absent (no activation layers, say) is not drawn.
    """
    out_dir = Path(out_dir)
    written = []
    layers = _by_layer(records, "layer")
    if layers:
        plot_gradients(layers, out_dir / "gradients.png", title)
        written.append(out_dir / "gradients.png")
    activations = _by_layer(records, "activation")
    if activations:
        plot_activations(activations, out_dir / "activations.png", title)
        written.append(out_dir / "activations.png")
    return written


def _by_layer(records: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    """{layer: its records sorted by epoch}, layers in model order (the order of first appearance)."""
    layers: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("kind") == kind and "layer" in record:
            layers.setdefault(record["layer"], []).append(record)
    for rows in layers.values():
        rows.sort(key=lambda row: row["epoch"])
    return layers


def _series(rows: list[dict[str, Any]], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one field; missing or non-positive values (unplottable on a log axis) become NaN."""
    epochs = np.array([row["epoch"] for row in rows], dtype=float)
    values = np.array([_positive(row.get(field)) for row in rows], dtype=float)
    return epochs, values


def _positive(value: Any) -> float:
    return (
        float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else math.nan
    )


def _depth_colours(count: int) -> list:
    """Colours from the input side (dark purple) to the output side (yellow)."""
    cmap = colormaps["viridis"]
    return [cmap(0.9 * index / max(count - 1, 1)) for index in range(count)]


def plot_gradients(layers: dict[str, list[dict[str, Any]]], out_png: Path, title: str = "") -> None:
    """Three panels: gradient norm per layer over epochs, gradient norm against depth, update-to-weight ratio."""
    names = list(layers)
    colours = _depth_colours(len(names))
    fig = Figure(figsize=(15, 4.6), dpi=CURVES_DPI, layout="constrained")
    over_time, by_depth, ratio_ax = fig.subplots(1, 3)

    for name, colour in zip(names, colours):
        for ax, key in ((over_time, "grad_norm"), (ratio_ax, "update_ratio")):
            epochs, values = _series(layers[name], key)
            ax.plot(
                epochs,
                values,
                color=colour,
                linewidth=1.6,
                marker="o" if len(epochs) <= 30 else None,
                markersize=3,
                label=name,
            )
    for ax, label in ((over_time, "gradient L2 norm"), (ratio_ax, "‖update‖ / ‖weights‖ per step")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
    over_time.set_title("gradient norm per layer")
    ratio_ax.set_title(
        "update-to-weight ratio per layer\n(shaded: typical at full learning rate)", fontsize=11
    )
    ratio_ax.axhspan(1e-4, 1e-2, color="tab:green", alpha=0.08, zorder=0)
    _legend(over_time, len(names))

    epochs = sorted({row["epoch"] for rows in layers.values() for row in rows})
    shown = [epochs[0]] if len(epochs) == 1 else [epochs[0], epochs[-1]]
    if len(epochs) >= 5:
        shown.insert(1, epochs[len(epochs) // 2])
    depth = np.arange(len(names))
    greys = {epoch: colour for epoch, colour in zip(shown, ["0.65", "tab:blue", "tab:red"][-len(shown) :])}
    for epoch in shown:
        values = [
            next((_positive(row.get("grad_norm")) for row in layers[name] if row["epoch"] == epoch), math.nan)
            for name in names
        ]
        by_depth.plot(depth, values, marker="o", linewidth=1.6, color=greys[epoch], label=f"epoch {epoch}")
    by_depth.set_yscale("log")
    by_depth.set_xticks(
        depth,
        names,
        rotation=45 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
        rotation_mode="anchor",
        fontsize=8,
    )
    by_depth.set_xlabel("layer (input → output)")
    by_depth.set_ylabel("gradient L2 norm")
    by_depth.set_title("gradient norm by depth")
    by_depth.grid(True, which="major", alpha=0.3)
    by_depth.legend(fontsize=8, loc="best")
    _note_ratio(by_depth, layers, names, shown[-1])
    fig.suptitle(f"gradients · {title}" if title else "gradients", fontsize=11)
    _save_atomic(fig, Path(out_png))


def _legend(ax: Axes, count: int) -> None:
    if count <= 12:
        ax.legend(fontsize=7, loc="best", ncol=1 if count <= 6 else 2, framealpha=0.85)
    else:
        ax.text(0.02, 0.02, "dark: input side · yellow: output side", transform=ax.transAxes, fontsize=8)


def _note_ratio(ax: Axes, layers: dict[str, list[dict[str, Any]]], names: list[str], epoch: int) -> None:
    """Write the first layer's gradient norm as a fraction of the last layer's (the vanishing factor)."""
    first = next(
        (_positive(row.get("grad_norm")) for row in layers[names[0]] if row["epoch"] == epoch), math.nan
    )
    last = next(
        (_positive(row.get("grad_norm")) for row in layers[names[-1]] if row["epoch"] == epoch), math.nan
    )
    if len(names) > 1 and math.isfinite(first) and math.isfinite(last):
        ax.text(
            0.02,
            0.98,
            f"epoch {epoch}: first / last layer = {first / last:.2g}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.7"},
        )


def plot_activations(layers: dict[str, list[dict[str, Any]]], out_png: Path, title: str = "") -> None:
    """One panel per activation layer: its output distribution at the first and last epoch, dead/saturated %."""
    names = list(layers)
    if len(names) > MAX_HISTOGRAM_PANELS:  # keep the picture readable: evenly spaced layers, first and last
        picks = np.linspace(0, len(names) - 1, MAX_HISTOGRAM_PANELS).round().astype(int)
        names = [names[index] for index in sorted(set(picks))]
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    fig = Figure(figsize=(3.6 * columns, 2.7 * rows + 0.6), dpi=CURVES_DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes, names):
        _draw_distribution(ax, name, layers[name])
    epochs = sorted({row["epoch"] for rows in layers.values() for row in rows if row.get("hist")})
    heading = "output distribution of each activation layer" + (f" · {title}" if title else "")
    if len(epochs) > 1:
        heading += f"\nepoch {epochs[0]} (gray line) and epoch {epochs[-1]} (blue)"
    elif epochs:
        heading += f"\nepoch {epochs[0]}"
    fig.suptitle(heading, fontsize=11)
    _save_atomic(fig, Path(out_png))


def _draw_distribution(ax: Axes, name: str, rows: list[dict[str, Any]]) -> None:
    with_hist = [row for row in rows if row.get("hist")]
    if len(with_hist) > 1:
        _stairs(ax, with_hist[0]["hist"], {"color": "0.45", "linewidth": 1.3})
    if with_hist:
        _stairs(ax, with_hist[-1]["hist"], {"color": "tab:blue", "fill": True, "alpha": 0.45})
    else:
        ax.text(
            0.5, 0.5, "no histogram recorded", transform=ax.transAxes, ha="center", fontsize=8, color="0.5"
        )
    final = rows[-1]
    ax.set_title(f"{name} ({final.get('type', '?')})", fontsize=9)
    bounds = final.get("saturation")
    if bounds:  # a squashing unit's whole range, so bunching in the middle or at a bound shows
        low, high = bounds
        margin = RANGE_MARGIN * (high - low)
        ax.set_xlim(low - margin, high + margin)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("output value", fontsize=8)
    notes = []
    if final.get("mean") is not None and final.get("std") is not None:
        notes.append(f"mean {final['mean']:.3g}  std {final['std']:.3g}")
    zeros = (final.get("hist") or {}).get("zeros", 0.0)
    if zeros >= 0.01:
        notes.append(f"exactly 0: {zeros:.0%} (not drawn)")
    if final.get("dead") is not None:
        notes.append(f"dead units {final['dead']:.0%}")
    if final.get("saturated") is not None:
        notes.append(f"saturated {final['saturated']:.0%}")
    warn = (final.get("dead") or 0) >= 0.4 or (final.get("saturated") or 0) >= 0.5
    ax.text(
        0.97,
        0.95,
        "\n".join(notes),
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
        color="tab:red" if warn else "0.2",
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.85},
    )
    ax.margins(y=0.35)  # room for the notes above the tallest bin


def _stairs(ax: Axes, hist: dict[str, Any], style: dict[str, Any]) -> None:
    """A recorded histogram as the fraction of all values per bin (exact zeros are counted apart)."""
    counts = np.asarray(hist["counts"], dtype=float)
    if counts.size == 0:
        return
    edges = np.linspace(hist["lo"], hist["hi"], len(counts) + 1)
    share = 1.0 - hist.get("zeros", 0.0)
    ax.stairs(share * counts / max(counts.sum(), 1), edges, **style)
