"""Data: every dataset becomes device-resident, normalised tensors with train / validation / test splits.

`load_data(cfg)` builds the dataset named in the config (see `kaizen.data.datasets`), splits a stratified
validation set off the training data, keeps a stratified `fraction` of the rest, and standardises every split
with the per-channel mean and std of the training split. `to_float` and `normalize` let prediction prepare new
inputs (`read_inputs`) exactly like the training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from kaizen import registry
from kaizen.data.datasets import RawData
from kaizen.data.inputs import read_inputs
from kaizen.data.selection import select_training
from kaizen.data.splits import stratified_split, stratified_subset
from kaizen.errors import KaizenError

if TYPE_CHECKING:  # config imports this package (through the registry) while it is being built
    from kaizen.config import DataConfig

__all__ = ["Data", "RawData", "data_shape", "load_data", "normalize", "read_inputs", "to_float"]

# distinct streams from one split seed, so the validation split does not mirror the test hold-out
_VAL_STREAM, _FRACTION_STREAM = 1, 2


@dataclass
class Data:
    """Train / validation / test tensors on one device (x float32 N x C x H x W normalised, y int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: list[float]
    std: list[float]
    source: str
    paths: dict[str, list[str]] | None = None  # split -> the source file of each example, for file formats


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Data:
    """Return the dataset `cfg.name` split, normalised and moved to `device`."""
    raw: RawData = select_training(registry.DATASETS.create(cfg.name, cfg), cfg)  # data.exclude / keep
    if raw.val_rows is not None:  # the data set comes with its validation split
        val = raw.val_rows
        train = np.setdiff1d(np.arange(len(raw.train_y)), val)
    else:
        val_seed = (cfg.split_seed, _VAL_STREAM)
        train, val = stratified_split(raw.train_y, cfg.val_split, val_seed, "data.val_split")
    note = f"; validation {len(val):,} of {len(raw.train_y):,} training examples"
    if cfg.fraction < 1:
        train = train[stratified_subset(raw.train_y[train], cfg.fraction, (cfg.split_seed, _FRACTION_STREAM))]
        note += f"; training on fraction {cfg.fraction:g} ({len(train):,} examples)"
    x_train = to_float(raw.train_x[train])
    channels = x_train.shape[1]
    if cfg.normalize:
        mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64).tolist()
        # a constant channel carries no information; dividing by 1 keeps it finite
        # one channel at a time: std's float64 temporary is then a third of the data (3 channels), not all of it
        deviations = [float(x_train[:, channel].std(dtype=np.float64)) for channel in range(channels)]
        std = [value if value > 1e-8 else 1.0 for value in deviations]
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    device = torch.device(device)

    def images(x: np.ndarray) -> torch.Tensor:
        floats = to_float(x)
        floats = floats.copy() if floats is x else floats  # never overwrite the data set's own arrays
        return normalize(torch.from_numpy(floats).to(device), mean, std, in_place=True)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)

    if raw.test_x.shape[1:] != x_train.shape[1:]:
        raise KaizenError(
            f"dataset {cfg.name}: test images {raw.test_x.shape[1:]} differ from {x_train.shape[1:]}"
        )
    return Data(
        x_train=normalize(torch.from_numpy(x_train).to(device), mean, std, in_place=True),
        y_train=labels(raw.train_y[train]),
        x_val=images(raw.train_x[val]),
        y_val=labels(raw.train_y[val]),
        x_test=images(raw.test_x),
        y_test=labels(raw.test_y),
        num_classes=len(raw.class_names),
        input_shape=tuple(int(size) for size in x_train.shape[1:]),
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
    )


def data_shape(cfg: DataConfig) -> tuple[tuple[int, int, int], int]:
    """Return (input shape C x H x W, number of classes) that `load_data(cfg)` would give, without decoding.

    Known data sets answer from their format; an image folder from its file headers (or its cache); only
    npz and csv files are read whole.
    """
    from kaizen.data.cifar import LAYOUTS
    from kaizen.data.datasets import IDX_CLASS_NAMES

    if cfg.name == "digits":
        return (1, 8, 8), 10
    if cfg.name in IDX_CLASS_NAMES:
        return (1, 28, 28), len(IDX_CLASS_NAMES[cfg.name])
    if cfg.name in LAYOUTS:
        return (3, 32, 32), LAYOUTS[cfg.name].classes
    if cfg.name == "folder":
        from kaizen.data.folder import resolve_settings, scan_folder

        scan = scan_folder(cfg)
        channels, size, _ = resolve_settings(cfg, scan)
        return (channels, *size), len(scan.class_names)
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
