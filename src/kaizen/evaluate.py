"""Evaluate a classifier: probabilities in, metrics out.

`predict_proba` runs the model; `evaluate` turns probabilities and labels into an `Evaluation` (accuracy,
loss, confusion matrix, per-class precision/recall/F1, worst mistakes); `render_evaluation` and `headline`
present it; `plot_evaluation` is the one place that writes pictures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from kaizen.errors import printable

LOG_CLAMP = 1e-12  # a probability of exactly 0 on the true class would make the loss infinite


def predict_proba(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int = 2048,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Return softmax class probabilities (N×K, float32) of `model` on `x`, computed in batches.

    Runs in eval mode under `torch.inference_mode()` and restores the model's previous train/eval mode.
    Each batch is moved to the model's device, then given to `prepare` if set (e.g. `Data.prepare`: stored
    uint8 pixels to normalised floats, a batch at a time instead of a float copy of the whole split); the
    result lives on the model's device too.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(x), batch_size) if len(x) else [0]  # an empty input still yields N×K
            batches = [
                model(
                    x[start : start + batch_size].to(device)
                    if prepare is None
                    else prepare(x[start : start + batch_size].to(device))
                )
                for start in starts
            ]
            return torch.softmax(torch.cat(batches).float(), dim=1)
    finally:
        model.train(was_training)


def predict_proba_tta(
    model: torch.nn.Module, x: torch.Tensor, augment, copies: int, batch_size: int = 2048, seed: int = 0
) -> torch.Tensor:
    """Test-time augmentation: class probabilities averaged over `x` and `copies` augmented versions of it.

    `augment` is a `kaizen.data.augment.Augment`; its randomness is seeded by `seed` and does not disturb the
    global random state.
    """
    unused_labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        views = [predict_proba(model, augment(x, unused_labels).x, batch_size) for _ in range(copies)]
    return torch.stack([predict_proba(model, x, batch_size), *views]).mean(0)


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one classifier on one labelled set. Arrays are NumPy; per-class arrays have length K."""

    class_names: list[str]
    accuracy: float
    loss: float
    confusion: np.ndarray  # K×K int64, rows = true class, columns = predicted class
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # int64, number of true samples per class
    macro_precision: float
    macro_recall: float
    macro_f1: float
    targets: np.ndarray  # N int64
    predictions: np.ndarray  # N int64, argmax of the probabilities
    confidence: np.ndarray  # N float, probability given to the predicted class
    files: list[str] | None = None  # N source files, when the data came from files (image folders)

    @property
    def count(self) -> int:
        """Return the number of evaluated samples."""
        return len(self.targets)

    def worst_mistakes(self, k: int) -> np.ndarray:
        """Return the indices of up to `k` misclassified samples, most confident wrong prediction first."""
        wrong = np.flatnonzero(self.predictions != self.targets)
        order = np.argsort(-self.confidence[wrong], kind="stable")
        return wrong[order][: max(k, 0)]


def evaluate(probs: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> Evaluation:
    """Return the `Evaluation` of class probabilities `probs` (N×K) against integer labels `y` (N).

    Loss is the mean cross-entropy -log p(true class), with p clamped at 1e-12. Per-class numbers come
    from scikit-learn with zero_division=0; macro averages are unweighted means over all K classes.
    """
    from sklearn.metrics import precision_recall_fscore_support  # imported here: slow, and only eval needs it

    n_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(f"probs must be N×{n_classes} (one column per class name), got {tuple(probs.shape)}")
    if y.ndim != 1 or len(y) != len(probs):
        raise ValueError(f"y must be a vector of {len(probs)} labels, got shape {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty set")
    probabilities = probs.detach().to("cpu", torch.float64).numpy()
    targets = y.detach().to("cpu", torch.int64).numpy()
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {targets.min()}..{targets.max()}")

    predictions = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(targets)), predictions]
    true_probability = probabilities[np.arange(len(targets)), targets]
    # abs() only turns -0.0 (a perfect fit) into 0.0: the cross-entropy itself is never negative.
    loss = abs(float(-np.log(np.clip(true_probability, LOG_CLAMP, None)).mean()))
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (targets, predictions), 1)

    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    return Evaluation(
        class_names=list(class_names),
        accuracy=float((predictions == targets).mean()),
        loss=loss,
        confusion=confusion,
        precision=np.asarray(precision, dtype=float),
        recall=np.asarray(recall, dtype=float),
        f1=np.asarray(f1, dtype=float),
        support=np.asarray(support, dtype=np.int64),
        macro_precision=float(np.mean(precision)),
        macro_recall=float(np.mean(recall)),
        macro_f1=float(np.mean(f1)),
        targets=targets,
        predictions=predictions.astype(np.int64),
        confidence=confidence,
    )


def render_evaluation(ev: Evaluation) -> Table:
    """Return a rich Table with one row per class (precision, recall, F1, support) and a macro-average row."""
    table = Table(title="per-class metrics", title_justify="left")
    table.add_column("class")
    for name in ("precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    weakest = int(np.argmin(ev.f1))
    for index, name in enumerate(ev.class_names):
        table.add_row(
            name,
            f"{ev.precision[index]:.4f}",
            f"{ev.recall[index]:.4f}",
            f"{ev.f1[index]:.4f}",
            f"{int(ev.support[index]):,}",
            style="yellow" if index == weakest and ev.f1[index] < 1.0 else None,
            end_section=index == len(ev.class_names) - 1,
        )
    table.add_row(
        "macro avg",
        f"{ev.macro_precision:.4f}",
        f"{ev.macro_recall:.4f}",
        f"{ev.macro_f1:.4f}",
        f"{int(ev.support.sum()):,}",
        style="bold",
    )
    return table


def mistake_files(ev: Evaluation, k: int = 10) -> list[str]:
    """Return lines "file: true → pred (confidence)" for the `k` worst mistakes; empty without files."""
    if ev.files is None:
        return []
    return [
        f"{printable(str(ev.files[i]))}: {ev.class_names[ev.targets[i]]} → {ev.class_names[ev.predictions[i]]} "
        f"({ev.confidence[i]:.0%})"
        for i in ev.worst_mistakes(k)
    ]


def headline(ev: Evaluation, split: str = "test") -> str:
    """Return a one-line summary, e.g. "test accuracy 98.72% · loss 0.0412 · 2,000 images"."""
    return f"{split} accuracy {ev.accuracy:.2%} · loss {ev.loss:.4f} · {ev.count:,} images"


def plot_evaluation(
    ev: Evaluation, images: torch.Tensor, out_dir: Path, split: str = "test", mistakes: int = 32
) -> list[Path]:
    """Write `confusion_matrix.png` and `mistakes.png` (suffixed `_<split>` unless test); return their paths.

    `images` are the evaluated inputs in display values (unnormalised, in [0, 1]), in the same order as
    the labels given to `evaluate`.
    """
    from kaizen.track.plots import plot_confusion, plot_mistakes

    out_dir = Path(out_dir)
    suffix = "" if split == "test" else f"_{split}"
    confusion_png = out_dir / f"confusion_matrix{suffix}.png"
    mistakes_png = out_dir / f"mistakes{suffix}.png"
    plot_confusion(ev.confusion, ev.class_names, confusion_png, title=f"confusion matrix · {split}")
    worst = ev.worst_mistakes(mistakes)
    plot_mistakes(
        images[torch.as_tensor(worst, dtype=torch.long)].detach().to("cpu", torch.float32).numpy(),
        true=ev.targets[worst].tolist(),
        pred=ev.predictions[worst].tolist(),
        confidence=ev.confidence[worst].tolist(),
        class_names=ev.class_names,
        out_png=mistakes_png,
        files=None if ev.files is None else [Path(ev.files[i]).name for i in worst],
    )
    return [confusion_png, mistakes_png]
