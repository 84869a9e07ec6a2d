"""PNG figures of a run: learning curves, confusion matrix, worst mistakes.

Figures are built on `matplotlib.figure.Figure` directly (Agg canvas, no pyplot global state), so plotting
is safe from any thread and never opens a window. Every PNG is written atomically: a temporary file in the
destination folder, then `os.replace`, so a reader never sees half a picture.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from kaizen.errors import KaizenError

if TYPE_CHECKING:
    from kaizen.config import DataConfig
    from kaizen.data.augment import Preview

METRICS_COLUMNS = ("epoch", "split", "loss", "acc", "lr", "seconds")
SPLIT_STYLES = {  # train blue, validation red, as in the seed's overlay; test a separate marker
    "train": {"color": "tab:blue", "label": "train"},
    "val": {"color": "tab:red", "label": "validation"},
    "test": {"color": "tab:green", "label": "test", "linestyle": "--", "marker": "D"},
}
CURVES_DPI = 110


def plot_curves(metrics_csv: Path, out_png: Path, kept: dict[str, Any] | None = None) -> None:
    """Draw loss and accuracy against epoch (train vs validation overlaid) from a run's `metrics.csv`.

    `kept` is the finished run's choice of weights, from its summary.json: `{"checkpoint": "best.pt" or
    "last.pt", "epoch": N, "monitor": "val_loss", ...}`. Its epoch is marked on both panels with the values
    there, the same numbers `kaizen train` prints, and a panel whose own best validation epoch differs says so
    (the checkpoint picked by the lowest loss is often not the epoch of the highest accuracy). Without `kept`
    (a run still going, or stopped), each panel marks its best validation epoch. Test rows, if any, are drawn
    as separate markers. Returns nothing; the figure is written atomically to `out_png`. Raises KaizenError if
    the CSV is missing or malformed.
    """
    metrics_csv = Path(metrics_csv)
    fig = curves_figure(_read_metrics(metrics_csv), f"learning curves · {metrics_csv.parent.name}", kept)
    _save_atomic(fig, Path(out_png))


def curves_figure(
    curves: dict[str, dict[str, np.ndarray]], title: str, kept: dict[str, Any] | None
) -> Figure:
    """The figure of `plot_curves`, from {split: {"epoch", "loss", "acc": arrays}}."""
    fig = Figure(figsize=(10, 4), dpi=CURVES_DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    _draw_panel(loss_ax, curves, "loss", best="min", kept=kept)
    _draw_panel(acc_ax, curves, "acc", best="max", kept=kept)
    loss_ax.set_title("loss")
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_title("accuracy")
    acc_ax.set_ylabel("accuracy")
    acc_values = np.concatenate([values["acc"] for values in curves.values()])
    finite_acc = acc_values[np.isfinite(acc_values)]
    acc_scale = 1.0 if finite_acc.size == 0 or finite_acc.max() <= 1.0 else 100.0
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=acc_scale, decimals=None))
    fig.suptitle(title, fontsize=11)
    return fig


def _read_metrics(metrics_csv: Path) -> dict[str, dict[str, np.ndarray]]:
    """Return {split: {"epoch", "loss", "acc": arrays sorted by epoch}}; blanks and non-finite become NaN."""
    try:
        with metrics_csv.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in METRICS_COLUMNS if name not in (reader.fieldnames or [])]
            if missing:
                raise KaizenError(f"{metrics_csv}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as error:
        raise KaizenError(f"cannot read {metrics_csv}: {error.strerror or error}") from None
    by_split: dict[str, list[tuple[float, float, float]]] = {}
    for line_number, row in enumerate(rows, start=2):
        try:
            epoch = float(row["epoch"])
        except (TypeError, ValueError):
            raise KaizenError(f"{metrics_csv}, line {line_number}: bad epoch {row['epoch']!r}") from None
        by_split.setdefault(row["split"], []).append((epoch, _number(row["loss"]), _number(row["acc"])))
    if not any(split in by_split for split in SPLIT_STYLES):
        raise KaizenError(f"{metrics_csv}: no train, val or test rows to plot")
    curves = {}
    for split in SPLIT_STYLES:
        if split in by_split:
            epoch, loss, acc = np.array(sorted(by_split[split]), dtype=float).T
            curves[split] = {"epoch": epoch, "loss": loss, "acc": acc}
    return curves


def _number(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _draw_panel(
    ax: Axes, curves: dict[str, dict[str, np.ndarray]], metric: str, best: str, kept: dict[str, Any] | None
) -> None:
    for split, values in curves.items():
        style = dict(SPLIT_STYLES[split])
        few_points = len(values["epoch"]) <= 30  # a lone epoch is invisible as a bare line
        if split != "test":
            style["marker"] = "o" if few_points else None
        ax.plot(
            values["epoch"], values[metric], linewidth=1.6, markersize=3.5 if split != "test" else 5, **style
        )
    first = min(values["epoch"].min() for values in curves.values())
    last = max(values["epoch"].max() for values in curves.values())
    if last - first < 2:  # otherwise one or two epochs get fractional ticks
        ax.set_xlim(first - 1, last + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.12)
    if kept is not None and kept.get("epoch") is not None:
        _mark_kept(ax, curves, metric, best, kept)
    elif "val" in curves:
        _mark_best(ax, curves["val"]["epoch"], curves["val"][metric], best, percent=metric == "acc")
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)


def _mark_best(ax: Axes, epochs: np.ndarray, values: np.ndarray, best: str, percent: bool) -> None:
    if np.all(np.isnan(values)):
        return
    index = _best_index(values, best)
    epoch, value = epochs[index], values[index]
    ax.axvline(epoch, color="0.6", linewidth=0.8, linestyle=":", zorder=1)
    ax.plot([epoch], [value], "o", color="black", markersize=6, zorder=5)
    text = f"best val {_shown(value, values, percent)}"
    _label(ax, epoch, value, f"{text}\nepoch {epoch:g}")


def _best_index(values: np.ndarray, best: str) -> int:
    """Where `values` (some not NaN) is lowest (`best="min"`) or highest."""
    return int(np.nanargmin(values) if best == "min" else np.nanargmax(values))


def _shown(value: float, values: np.ndarray, percent: bool) -> str:
    """An accuracy as a percentage (of a 0-1 or a 0-100 column), a loss with four decimals."""
    if not percent:
        return f"{value:.4f}"
    return f"{value * (100.0 if np.nanmax(values) <= 1.0 else 1.0):.2f}%"


def _mark_kept(
    ax: Axes, curves: dict[str, dict[str, np.ndarray]], metric: str, best: str, kept: dict[str, Any]
) -> None:
    """The epoch of the weights the run ended with, on the curve of the split its monitor watches; and, on a
    panel whose own best validation epoch is another, that epoch too (a hollow dot)."""
    epoch = float(kept["epoch"])
    monitor = str(kept.get("monitor") or "val_loss")
    split = "train" if monitor.startswith("train") or "val" not in curves else "val"
    ax.axvline(epoch, color="0.6", linewidth=0.8, linestyle=":", zorder=1)
    if split not in curves:
        return
    epochs, values = curves[split]["epoch"], curves[split][metric]
    at = np.flatnonzero(epochs == epoch)
    if at.size == 0 or np.isnan(values[at[-1]]):
        return
    value = values[at[-1]]
    percent = metric == "acc"
    ax.plot([epoch], [value], "o", color="black", markersize=6, zorder=5)
    extreme = "lowest" if best == "min" else "highest"
    what = f"{split} {metric}"
    lines = [
        f"{kept.get('checkpoint', 'kept')} · epoch {epoch:g}",
        f"{what} {_shown(value, values, percent)}",
    ]
    if monitor == f"{split}_{metric}":
        lines[0] += f" ({extreme} {what})"
    elif not np.all(np.isnan(values)):
        index = _best_index(values, best)
        other = values[index]
        if other != value:
            ax.plot(
                [epochs[index]], [other], "o", markerfacecolor="white", color="black", markersize=6, zorder=5
            )
            lines.append(f"{extreme} {_shown(other, values, percent)} at epoch {epochs[index]:g}")
    _label(ax, epoch, value, "\n".join(lines))


def _label(ax: Axes, epoch: float, value: float, text: str) -> None:
    # Point the label towards the middle of the panel, where there is room, so it never leaves the axes.
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    right_half = epoch > (x_low + x_high) / 2
    upper_half = value > (y_low + y_high) / 2
    ax.annotate(
        text,
        xy=(epoch, value),
        xytext=(-8 if right_half else 8, -10 if upper_half else 10),
        textcoords="offset points",
        ha="right" if right_half else "left",
        va="top" if upper_half else "bottom",
        fontsize=8,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
        zorder=6,
    )


def plot_confusion(matrix: np.ndarray, class_names: list[str], out_png: Path, title: str) -> None:
    """Draw a confusion matrix (rows true, columns predicted) with counts in each cell.

    Colour is the row-normalised fraction (recall per true class), so rare classes read as clearly as
    common ones; text is white on dark cells and black on light ones. Returns nothing; writes `out_png`.
    """
    matrix = np.asarray(matrix)
    n_classes = len(class_names)
    if matrix.shape != (n_classes, n_classes):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({n_classes}, {n_classes})")
    row_totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=float), where=row_totals > 0)

    side = min(max(4.5, 0.42 * n_classes + 2.5), 12)
    fig = Figure(figsize=(side + 1.2, side), dpi=CURVES_DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("fraction of true class")

    largest = int(matrix.max()) if matrix.size else 0
    cell_points = 0.8 * side * 72 / max(n_classes, 1)  # the axes take about 80% of the figure's height
    cell_font = max(5.0, min(10.0, 0.75 * cell_points / (0.6 * max(len(f"{largest:d}"), 2))))
    for true_index in range(n_classes):
        for pred_index in range(n_classes):
            count = int(matrix[true_index, pred_index])
            dark = fractions[true_index, pred_index] > 0.5
            colour = "white" if dark else ("black" if count else "0.7")
            ax.text(
                pred_index,
                true_index,
                f"{count:d}",
                ha="center",
                va="center",
                color=colour,
                fontsize=cell_font,
            )

    ticks = np.arange(n_classes)
    long_names = max((len(name) for name in class_names), default=0) > 3
    ax.set_xticks(
        ticks,
        class_names,
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(ticks, class_names)
    ax.tick_params(labelsize=max(6.0, min(10.0, 180 / max(n_classes, 1))))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / matrix.sum() if matrix.sum() else math.nan
    ax.set_title(f"{title}\n{int(matrix.sum()):,} images · accuracy {accuracy:.2%}", fontsize=11)
    _save_atomic(fig, Path(out_png))


def plot_mistakes(
    images: np.ndarray,
    true: list[int],
    pred: list[int],
    confidence: list[float],
    class_names: list[str],
    out_png: Path,
    columns: int = 8,
    files: list[str] | None = None,
) -> None:
    """Draw a grid of misclassified images, each titled "true 3 → pred 8 (97%)", in the order given.

    With `files` (one name per image), each title names the image's file too.

    `images` is N×C×H×W (or N×H×W) with display values in [0, 1] (clipped); C=1 is shown in grayscale,
    C=3 as RGB. With N=0 the figure says "no mistakes". Returns nothing; writes `out_png`.
    """
    images = np.asarray(images, dtype=float)
    if images.ndim == 3:
        images = images[:, None]
    count = len(images)
    if not (len(true) == len(pred) == len(confidence) == count):
        raise ValueError(
            f"plot_mistakes: {count} images but {len(true)} true, {len(pred)} pred, "
            f"{len(confidence)} confidence values"
        )
    if count == 0:
        fig = Figure(figsize=(5, 2), dpi=CURVES_DPI)
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=16, color="tab:green")
        _save_atomic(fig, Path(out_png))
        return
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"plot_mistakes: images must be N×1×H×W or N×3×H×W, got shape {images.shape}")

    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(1.7 * columns, 1.9 * rows + 0.5), dpi=CURVES_DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for position, (ax, image, true_index, pred_index, conf) in enumerate(
        zip(axes[:count], images, true, pred, confidence, strict=True)
    ):
        pixels = np.clip(image, 0.0, 1.0)
        if pixels.shape[0] == 1:
            ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
        label = f"true {class_names[true_index]} → pred {class_names[pred_index]} ({conf:.0%})"
        if len(label) > 24:  # long class names: two short lines instead of one that spills over
            label = f"true {class_names[true_index]}\n→ pred {class_names[pred_index]} ({conf:.0%})"
        if files is not None:
            label += f"\n{files[position]}"
        ax.set_title(label, fontsize=8, color="tab:red")
    fig.suptitle(f"worst mistakes · {count} shown", fontsize=11)
    _save_atomic(fig, Path(out_png))


def plot_augment_preview(shown: Preview, out_png: Path) -> None:
    """Draw each original (first column) beside its augmented copies (kaizen.data.augment.preview), titled
    with the augmentation's settings. Writes `out_png`."""
    originals, augmented = shown.originals, shown.augmented  # N×C×H×W and N×K×C×H×W, values in [0, 1]
    count, copies = augmented.shape[:2]
    fig = Figure(figsize=(1.3 * (copies + 1), 1.3 * count + 0.6), dpi=CURVES_DPI, layout="constrained")
    axes = fig.subplots(count, copies + 1, squeeze=False)
    for row in range(count):
        for column, image in enumerate([originals[row], *augmented[row]]):
            ax = axes[row, column]
            ax.set_axis_off()
            pixels = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
            if pixels.shape[0] == 1:
                ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
            if row == 0:
                ax.set_title("original" if column == 0 else f"copy {column}", fontsize=8)
    fig.suptitle(f"augmentation: {shown.settings}", fontsize=10)
    _save_atomic(fig, Path(out_png))


def plot_data_grid(cfg: DataConfig, out_png: Path) -> None:
    """Draw a few training examples of each class of `cfg`'s data set, as the model sees them (`kaizen data
    --out`)."""
    from kaizen.data.report import class_examples

    examples, class_names, title = class_examples(cfg)
    plot_class_grid(examples, class_names, out_png, title)


def plot_class_grid(examples: list[np.ndarray], class_names: list[str], out_png: Path, title: str) -> None:
    """Draw one row per class of its examples (each K×C×H×W, display values in [0, 1]). Writes `out_png`."""
    columns = max(1, max(len(images) for images in examples))
    rows = len(examples)
    fig = Figure(figsize=(1.2 * columns + 1.2, 1.2 * rows + 0.6), dpi=CURVES_DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for row, (images, name) in enumerate(zip(examples, class_names, strict=True)):
        for column in range(columns):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if column == 0:
                ax.set_ylabel(name, fontsize=9, rotation=0, ha="right", va="center")
            if column >= len(images):
                continue
            pixels = np.clip(np.asarray(images[column], dtype=float), 0.0, 1.0)
            if pixels.shape[0] == 1:
                ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    fig.suptitle(title, fontsize=10)
    _save_atomic(fig, Path(out_png))


def _save_atomic(fig: Figure, out_png: Path) -> None:
    """Write `fig` as PNG to a temporary file beside `out_png`, then rename it into place."""
    temporary = out_png.parent / f".{out_png.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("xb") as stream:  # ordinary permissions (umask), unlike mkstemp's 0600
            fig.savefig(stream, format="png")
        os.replace(temporary, out_png)
    except OSError as error:
        with contextlib.suppress(OSError):  # a read-only folder refuses the unlink too
            temporary.unlink(missing_ok=True)
        raise KaizenError(f"cannot write {out_png}: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
