"""`kaizen data`: what a run would see, without training: source, classes and split counts, image shape,
original sizes and the resize, memory, cache state and skipped files; and a grid of examples per class.

An image folder is described from its file headers (and its cache when up to date), so nothing is decoded
but the few examples the grid draws; other data sets are loaded as a run loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kaizen import registry

if TYPE_CHECKING:
    from kaizen.config import DataConfig

GRID_EXAMPLES = 6  # examples per class in the grid


@dataclass
class DataReport:
    """What a run would see of its data."""

    source: str
    class_names: list[str]
    counts: dict[str, np.ndarray]  # split -> examples per class
    input_shape: tuple[int, int, int]
    original_sizes: tuple[tuple[int, int], tuple[int, int]] | None  # (min H, min W), (max H, max W)
    resize: str | None
    cache: str | None  # the cache folder and its state, for folders
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pending: bool = False  # counts are before decoding (a file may still fail to decode)
    itemsize: int = 1  # bytes per stored pixel value (uint8 1, float32 4)
    budget: str = ""  # where the training images would be: "in memory (...)" or "streamed ... (...)"

    @property
    def uint8_bytes(self) -> int:
        """Bytes of every split's pixels as uint8."""
        return int(sum(counts.sum() for counts in self.counts.values())) * int(np.prod(self.input_shape))


def describe(cfg: DataConfig, device: str = "cpu") -> DataReport:
    """Return the report of `cfg`'s data set, with where its training images would be on `device`.

    A format that can count its examples without loading them gives a `describe` trait (image folders read
    only their files' headers); the others are loaded."""
    describe_unloaded = registry.DATASETS.traits(cfg.name).describe
    if describe_unloaded is not None:
        report = describe_unloaded(cfg)
    else:
        from kaizen.data import load_data

        data = load_data(cfg, "cpu")
        classes = len(data.class_names)
        counts = {
            split: np.bincount(getattr(data, f"y_{split}").numpy(), minlength=classes)
            for split in ("train", "val", "test")
        }
        report = DataReport(data.source, data.class_names, counts, data.input_shape, None, None, None)
        report.itemsize = data.pixels["val"].element_size()
    report.budget = _placement(cfg, report, device)
    return report


def _placement(cfg: DataConfig, report: DataReport, device: str) -> str:
    """Say whether the training images fit data.max_memory (as load_data decides) or would be streamed."""
    import torch

    from kaizen.data.memory import memory_budget
    from kaizen.sizes import describe_bytes

    train = int(report.counts["train"].sum()) * int(np.prod(report.input_shape)) * report.itemsize
    budget = memory_budget(cfg.max_memory, torch.device(device))
    limit = "data.max_memory" if cfg.max_memory is not None else f"half the free memory of {device}"
    where = "in memory" if train <= budget else "streamed from the host, one batch ahead"
    return f"training images {describe_bytes(train)}: {where} (budget {describe_bytes(budget)}, {limit})"


def render(report: DataReport) -> list[str]:
    """Return the report as lines of text (rich markup-free)."""
    shape = " x ".join(str(side) for side in report.input_shape)
    lines = [f"source: {report.source}"]
    width = max(len("class"), *(len(name) for name in report.class_names))
    lines.append(f"{'class':<{width}}  {'train':>8}  {'val':>8}  {'test':>8}")
    for index, name in enumerate(report.class_names):
        row = "  ".join(f"{int(report.counts[split][index]):>8,}" for split in ("train", "val", "test"))
        lines.append(f"{name:<{width}}  {row}")
    total = "  ".join(f"{int(report.counts[split].sum()):>8,}" for split in ("train", "val", "test"))
    lines.append(f"{'total':<{width}}  {total}")
    if report.pending:
        lines.append("(counts before decoding: a file that fails to decode is skipped then)")
    if report.original_sizes is not None:
        (low_h, low_w), (high_h, high_w) = report.original_sizes
        lines.append(f"original sizes: {low_h}..{high_h} high x {low_w}..{high_w} wide")
    resize = f", each image resized by {report.resize}" if report.resize else ""
    lines.append(f"input: channels x height x width = {shape}{resize}")
    mb = report.uint8_bytes / 2**20
    lines.append(f"memory: {mb:,.1f} MiB as uint8, {4 * mb:,.1f} MiB as float32")
    if report.budget:
        lines.append(report.budget)
    if report.cache is not None:
        lines.append(f"cache: {report.cache}")
    lines.append(f"skipped files: {len(report.skipped)}")
    lines.extend(f"  {path}: {reason}" for path, reason in report.skipped)
    return lines


def class_examples(cfg: DataConfig, per_class: int = GRID_EXAMPLES) -> tuple[list[np.ndarray], list[str], str]:
    """Return (the first `per_class` training examples of each class in [0, 1] as the model sees them after
    resizing, the class names, a title). A format with an `examples` trait gives them without loading the rest
    (image folders decode only these); the others are loaded."""
    examples_of = registry.DATASETS.traits(cfg.name).examples
    if examples_of is not None:
        return examples_of(cfg, per_class)
    from kaizen.data import load_data

    data = load_data(cfg, "cpu")
    mean = np.asarray(data.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data.std, dtype=np.float32).reshape(1, -1, 1, 1)
    x, y = data.x_train.numpy() * std + mean, data.y_train.numpy()
    examples = [x[y == label][:per_class] for label in range(data.num_classes)]
    shape = " x ".join(str(side) for side in data.input_shape)
    return examples, data.class_names, f"{cfg.name} · {shape}"
