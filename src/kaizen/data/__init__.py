"""Data: every dataset becomes device-resident images (as stored: uint8 or float32) with train / validation /
test splits, normalised on the device when read.

`load_data(cfg)` builds the dataset named in the config (see `kaizen.data.datasets`), splits a stratified
validation set off the training data, keeps a stratified `fraction` of the rest, and standardises every split
with the per-channel mean and std of the training split; training images over `data.max_memory` stay on the
host and are streamed (`kaizen.data.memory`). `to_float` and `normalize` let prediction prepare new
inputs (`read_inputs`) exactly like the training data.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from kaizen import registry
from kaizen.data.inputs import read_inputs
from kaizen.data.memory import HostImages, memory_budget, take_rows
from kaizen.data.raw import RawData
from kaizen.data.selection import check_classes, select_training
from kaizen.data.splits import stratified_split, stratified_subset
from kaizen.errors import KaizenError
from kaizen.sizes import describe_bytes

if TYPE_CHECKING:  # config imports this package (through the registry) while it is being built
    from kaizen.config import DataConfig

__all__ = ["Data", "RawData", "data_shape", "load_data", "normalize", "read_inputs", "to_float"]

log = logging.getLogger(__name__)

# distinct streams from one split seed, so the validation split does not mirror the test hold-out
_VAL_STREAM, _FRACTION_STREAM = 1, 2


@dataclass
class Data:
    """Train / validation / test images and labels (y int64) on one device.

    The images are kept as stored (`pixels`: uint8 0..255 for integer sources, 4x smaller than float32, or
    float32 already scaled) and normalised on the device when read: `x_train` / `x_val` / `x_test` give a
    whole split as float32 N x C x H x W normalised (computed on each access), `train_batches` the training
    batches of an epoch. When the training images do not fit `data.max_memory`, `host_train` keeps them on
    the host (the memory-mapped cache) and `pixels` has no "train".
    """

    pixels: dict[str, torch.Tensor]  # split -> images as stored, on the device
    y_train: torch.Tensor
    y_val: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: list[float]
    std: list[float]
    source: str
    paths: dict[str, list[str]] | None = None  # split -> the source file of each example, for file formats
    host_train: HostImages | None = None  # the training images, when they stay on the host

    @property
    def x_train(self) -> torch.Tensor:
        if self.host_train is not None:
            return self.prepare(
                self.host_train.gather(torch.arange(len(self.y_train))).to(self.y_train.device)
            )
        return self.prepare(self.pixels["train"])

    @property
    def x_val(self) -> torch.Tensor:
        return self.prepare(self.pixels["val"])

    @property
    def x_test(self) -> torch.Tensor:
        return self.prepare(self.pixels["test"])

    def prepare(self, stored: torch.Tensor) -> torch.Tensor:
        """Return stored images (uint8 or float32, on the device) as float32 normalised, as a new tensor."""
        floats = stored.float() / 255 if stored.dtype == torch.uint8 else stored.clone()
        return normalize(floats, self.mean, self.std, in_place=True)

    def train_batch(self, index: torch.Tensor) -> torch.Tensor:
        """Return the training images at `index`, normalised on the device."""
        if self.host_train is not None:
            return self.prepare(self.host_train.gather(index).to(self.y_train.device))
        return self.prepare(self.pixels["train"][index])

    def train_batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Yield the training images of each index batch in turn, normalised on the device.

        Streamed from the host, each batch is gathered there while the one before trains.
        """
        if self.host_train is None:
            for index in indices:
                yield self.prepare(self.pixels["train"][index])
            return
        for batch in self.host_train.stream(indices, self.y_train.device):
            yield self.prepare(batch)

    def take_train(self, index: torch.Tensor) -> Data:
        """Return this data with the training examples at `index` (in that order) as its training split."""
        if self.host_train is not None:
            return dataclasses.replace(
                self, host_train=self.host_train.take(index), y_train=self.y_train[index]
            )
        pixels = {**self.pixels, "train": self.pixels["train"][index]}
        return dataclasses.replace(self, pixels=pixels, y_train=self.y_train[index])


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Data:
    """Return the dataset `cfg.name` split and moved to `device` (or its training images streamed from the host)."""
    raw: RawData = registry.DATASETS.create(cfg.name, cfg)
    if raw.val_rows is not None:  # the data set comes with its validation split
        val = raw.val_rows
        train = np.setdiff1d(np.arange(len(raw.train_y)), val)
    else:
        val_seed = (cfg.split_seed, _VAL_STREAM)
        train, val = stratified_split(raw.train_y, cfg.val_split, val_seed, "data.val_split")
    train, selected = select_training(raw, cfg, train)  # data.exclude / keep: what trains, not what scores
    present = np.unique(raw.train_y[train])
    if len(present) == 1:  # it would "learn" 100% accuracy and say nothing
        raise KaizenError(
            f"dataset {cfg.name}: every training example is of class '{raw.class_names[present[0]]}'; "
            "a classifier needs at least two classes"
        )
    note = f"; validation {len(val):,} of {len(raw.train_y):,} training examples{selected}"
    classes = len(raw.class_names)
    check_classes(  # a class with no training example: an error where it is scored, else a warning (before
        # data.fraction, whose small subsets may leave a class out on purpose: datacurve)
        list(raw.class_names),
        {
            split: np.bincount(y, minlength=classes)
            for split, y in (("train", raw.train_y[train]), ("val", raw.train_y[val]), ("test", raw.test_y))
        },
    )
    if cfg.fraction < 1:
        train = train[stratified_subset(raw.train_y[train], cfg.fraction, (cfg.split_seed, _FRACTION_STREAM))]
        note += f"; training on fraction {cfg.fraction:g} ({len(train):,} examples)"
    if raw.test_x.shape[1:] != raw.train_x.shape[1:]:
        raise KaizenError(
            f"dataset {cfg.name}: test images {raw.test_x.shape[1:]} differ from {raw.train_x.shape[1:]}"
        )
    device = torch.device(device)
    train_bytes = len(train) * int(np.prod(raw.train_x.shape[1:])) * raw.train_x.itemsize
    budget = memory_budget(cfg.max_memory, device)
    host_train = None
    if train_bytes > budget:
        host_train = HostImages(raw.train_x, raw.rows("train", train))
        why = f"the training images ({describe_bytes(train_bytes)}) exceed data.max_memory ({describe_bytes(budget)})"
        note += f"; training images streamed from the host: {why}"
        log.warning("%s: streaming them from the host", why)
    # the training images in memory first, so their statistics come from that copy, not a second pass over
    # the (memory-mapped) source
    in_memory = host_train is None
    train_x = raw.images("train", train) if in_memory else None
    if cfg.normalize:
        mean, std = _statistics(train_x, None) if in_memory else _statistics(raw.train_x, host_train.rows)
    else:
        mean, std = [0.0] * raw.train_x.shape[1], [1.0] * raw.train_x.shape[1]

    def images(split: str, index: np.ndarray | None) -> torch.Tensor:
        return torch.from_numpy(raw.images(split, index)).to(device)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)

    pixels = {"val": images("train", val), "test": images("test", None)}
    if host_train is None:
        pixels["train"] = torch.from_numpy(train_x).to(device)
        del train_x  # on a GPU, the host copy goes now
    return Data(
        pixels=pixels,
        y_train=labels(raw.train_y[train]),
        y_val=labels(raw.train_y[val]),
        y_test=labels(raw.test_y),
        num_classes=len(raw.class_names),
        input_shape=tuple(int(size) for size in raw.train_x.shape[1:]),
        class_names=list(raw.class_names),
        mean=mean,
        std=std,
        source=raw.source + note,
        paths=None
        if raw.train_paths is None or raw.test_paths is None
        else {
            "train": [raw.train_paths[i] for i in train],
            "val": [raw.train_paths[i] for i in val],
            "test": list(raw.test_paths),
        },
        host_train=host_train,
    )


def _statistics(x: np.ndarray, rows: np.ndarray | None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of `x[rows]` (all of x when rows is None) as to_float scales it (a constant
    channel gets std 1).

    uint8 images: from the count of each of the 256 values per channel, gathered a chunk at a time, so no
    float copy of the data is made. float32 images: numpy's mean and std of the rows.
    """
    channels = x.shape[1]
    if x.dtype == np.uint8:
        counts = np.zeros((channels, 256), dtype=np.int64)
        # bincount makes an int64 copy of its input (8 bytes per pixel): 1 MiB of them at a time, so the
        # temporaries stay below what the C allocator keeps after freeing (a 4 MiB chunk left 19 MiB held)
        step = max(1, 2**20 // (8 * int(np.prod(x.shape[2:]))))
        for start in range(0, len(x) if rows is None else len(rows), step):
            block = x[start : start + step] if rows is None else take_rows(x, rows[start : start + step])
            for channel in range(channels):
                counts[channel] += np.bincount(block[:, channel].ravel(), minlength=256)
        values = (np.arange(256, dtype=np.float32) / np.float32(255)).astype(np.float64)
        total = counts.sum(axis=1)
        mean = counts @ values / total
        deviations = np.sqrt((counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total)
        means, stds = mean.tolist(), deviations.tolist()
    else:
        floats = x if rows is None else x[rows]
        means = floats.mean(axis=(0, 2, 3), dtype=np.float64).tolist()
        # one channel at a time: std's float64 temporary is then a third of the data (3 channels), not all of it
        stds = [float(floats[:, channel].std(dtype=np.float64)) for channel in range(channels)]
    # a constant channel carries no information; dividing by 1 keeps it finite
    return means, [value if value > 1e-8 else 1.0 for value in stds]


def data_shape(cfg: DataConfig) -> tuple[tuple[int, int, int], int]:
    """Return (input shape C x H x W, number of classes) that `load_data(cfg)` would give, without decoding.

    Each data set's `shape` trait answers from its format (an image folder from its file headers); data sets
    without one (arrays in npz and csv files) are loaded.
    """
    shape = registry.DATASETS.traits(cfg.name).shape
    if shape is not None:
        return shape(cfg)
    data = load_data(cfg, "cpu")
    return data.input_shape, data.num_classes


def to_float(x: np.ndarray) -> np.ndarray:
    """Return images as float32: integers (uint8 0..255) divided by 255, floats unchanged."""
    if np.issubdtype(x.dtype, np.integer):
        floats = x.astype(np.float32)
        floats /= np.float32(255)  # in place: one float copy of the data at a time, not two
        return floats
    return x.astype(np.float32, copy=False)


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], in_place: bool = False
) -> torch.Tensor:
    """Return (x - mean) / std per channel of an N x C x H x W float tensor, on x's device.

    `in_place` overwrites x (a tensor the caller owns) instead of allocating two more of its size.
    """
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    if in_place:
        return x.sub_(mean_t).div_(std_t)
    return (x - mean_t) / std_t
