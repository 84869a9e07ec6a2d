"""`kaizen data`: what a run would see, without training: source, classes and split counts, image shape,
original sizes and the resize, memory, cache state and skipped files; and a grid of examples per class.

An image folder is described from its file headers (and its cache when up to date), so nothing is decoded
but the few examples the grid draws; other data sets are loaded as a run loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kaizen.data.selection import check_classes, kept_examples
from kaizen.data.splits import stratified_split, stratified_subset
from kaizen.errors import KaizenError

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
    """Return the report of `cfg`'s data set, with where its training images would be on `device`."""
    if cfg.name == "folder":
        report = _describe_folder(cfg)
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

    from kaizen.data.memory import describe_bytes, memory_budget

    train = int(report.counts["train"].sum()) * int(np.prod(report.input_shape)) * report.itemsize
    budget = memory_budget(cfg.max_memory, torch.device(device))
    limit = "data.max_memory" if cfg.max_memory is not None else f"half the free memory of {device}"
    where = "in memory" if train <= budget else "streamed from the host, one batch ahead"
    return f"training images {describe_bytes(train)}: {where} (budget {describe_bytes(budget)}, {limit})"


def _describe_folder(cfg: DataConfig) -> DataReport:
    from kaizen.data import _FRACTION_STREAM, _VAL_STREAM
    from kaizen.data.folder import SPLITS, decode_many, resolve_settings, scan_folder
    from kaizen.data.imagecache import cache_dir, cache_state, strict_error

    scan = scan_folder(cfg)
    channels, size, _ = resolve_settings(cfg, scan)
    state, manifest = cache_state(cfg, scan)
    headers = decode_many(scan.all_files(), None, 1, cfg.resize, "reading image headers")
    for path, header in zip(scan.all_files(), headers):
        if header.bomb:
            raise KaizenError(f"{path}: {header.problem}")
    readable = [header.original for header in headers if header.problem is None]
    if manifest is not None:  # the cache knows which files decode
        kept = {split: np.asarray(manifest["kept"][split], dtype=np.int64) for split in SPLITS}
        problems = list(manifest["problems"].items())
    else:  # the files whose headers cannot be read will not decode either
        readable_file = np.array([header.problem is None for header in headers], dtype=bool)
        bounds = np.cumsum([0] + [len(scan.files[split]) for split in SPLITS])
        kept = {
            split: np.flatnonzero(readable_file[bounds[i] : bounds[i + 1]]) for i, split in enumerate(SPLITS)
        }
        problems = [
            (str(path), h.problem) for path, h in zip(scan.all_files(), headers) if h.problem is not None
        ]
    if cfg.strict and problems:
        raise strict_error(*problems[0])
    skipped = [(str(path), reason) for path, reason in scan.skipped] + problems
    labels = {split: scan.labels[split][kept[split]] for split in SPLITS}
    train, test = labels["train"], labels["test"]
    files = [scan.files["train"][i] for i in kept["train"]]
    if scan.held_out:
        rest, held = stratified_split(train, cfg.test_split, cfg.split_seed, what="data.test_split")
        train, test, files = train[rest], train[held], [files[i] for i in rest]
    val = labels["val"]
    chosen = kept_examples(cfg, len(train) + len(val), files + [scan.files["val"][i] for i in kept["val"]])
    if chosen is not None:  # data.exclude / data.keep, over training then val/ examples as load_data counts
        train, val = train[chosen[chosen < len(train)]], val[chosen[chosen >= len(train)] - len(train)]
    if not len(labels["val"]):  # no val/ folder: split off as load_data does
        train_rows, val_rows = stratified_split(
            train, cfg.val_split, (cfg.split_seed, _VAL_STREAM), "data.val_split"
        )
        train, val = train[train_rows], train[val_rows]
    classes = len(scan.class_names)
    check_classes(  # as load_data does, before data.fraction: what a run would be told
        scan.class_names,
        {
            name: np.bincount(y, minlength=classes)
            for name, y in (("train", train), ("val", val), ("test", test))
        },
    )
    if cfg.fraction < 1:
        train = train[stratified_subset(train, cfg.fraction, (cfg.split_seed, _FRACTION_STREAM))]
    counts = {
        name: np.bincount(split, minlength=classes)
        for name, split in (("train", train), ("val", val), ("test", test))
    }
    sizes = np.array(readable) if readable else None
    return DataReport(
        source=scan.source,
        class_names=scan.class_names,
        counts=counts,
        input_shape=(channels, *size),
        original_sizes=None
        if sizes is None
        else (tuple(sizes.min(0).tolist()), tuple(sizes.max(0).tolist())),
        resize=cfg.resize,
        cache=f"{cache_dir(cfg, scan)} ({state})",
        skipped=skipped,
        pending=manifest is None,
    )


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


def draw_grid(cfg: DataConfig, out_png: Path, per_class: int = GRID_EXAMPLES) -> None:
    """Draw the first `per_class` training examples of each class, as the model sees them after resizing."""
    from kaizen.track.plots import plot_class_grid

    if cfg.name == "folder":
        from kaizen.data.folder import decode_many, resolve_settings, scan_folder

        scan = scan_folder(cfg)
        channels, size, _ = resolve_settings(cfg, scan)
        examples = []
        for label in range(len(scan.class_names)):
            files = [path for path, y in zip(scan.files["train"], scan.labels["train"]) if y == label]
            decoded = decode_many(files[: per_class * 2], size, channels, cfg.resize)
            pixels = [item.pixels for item in decoded if item.pixels is not None][:per_class]
            examples.append(
                np.stack(pixels).astype(np.float32) / 255 if pixels else np.empty((0, channels, *size))
            )
        title = f"{cfg.path} · {channels} x {size[0]} x {size[1]} ({cfg.resize})"
        plot_class_grid(examples, scan.class_names, out_png, title)
        return
    from kaizen.data import load_data

    data = load_data(cfg, "cpu")
    mean = np.asarray(data.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data.std, dtype=np.float32).reshape(1, -1, 1, 1)
    x, y = data.x_train.numpy() * std + mean, data.y_train.numpy()
    examples = [x[y == label][:per_class] for label in range(data.num_classes)]
    shape = " x ".join(str(side) for side in data.input_shape)
    plot_class_grid(examples, data.class_names, out_png, f"{cfg.name} · {shape}")
