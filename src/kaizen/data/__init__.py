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

__all__ = ["Data", "RawData", "load_data", "normalize", "read_inputs", "to_float"]

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


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Data:
    """Return the dataset `cfg.name` split, normalised and moved to `device`."""
    raw: RawData = select_training(registry.DATASETS.create(cfg.name, cfg), cfg)  # data.exclude / keep
    train, val = stratified_split(raw.train_y, cfg.val_split, (cfg.split_seed, _VAL_STREAM), "data.val_split")
    note = f"; validation {len(val):,} of {len(raw.train_y):,} training examples"
    if cfg.fraction < 1:
        train = train[stratified_subset(raw.train_y[train], cfg.fraction, (cfg.split_seed, _FRACTION_STREAM))]
        note += f"; training on fraction {cfg.fraction:g} ({len(train):,} examples)"
    x_train = to_float(raw.train_x[train])
    channels = x_train.shape[1]
    if cfg.normalize:
        mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64).tolist()
        # a constant channel carries no information; dividing by 1 keeps it finite
        std = [
            value if value > 1e-8 else 1.0 for value in x_train.std(axis=(0, 2, 3), dtype=np.float64).tolist()
        ]
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    device = torch.device(device)

    def images(x: np.ndarray) -> torch.Tensor:
        return normalize(torch.from_numpy(to_float(x)).to(device), mean, std)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)

    if raw.test_x.shape[1:] != x_train.shape[1:]:
        raise KaizenError(
            f"dataset {cfg.name}: test images {raw.test_x.shape[1:]} differ from {x_train.shape[1:]}"
        )
    return Data(
        x_train=normalize(torch.from_numpy(x_train).to(device), mean, std),
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
    )


def to_float(x: np.ndarray) -> np.ndarray:
    """Return images as float32: integers (uint8 0..255) divided by 255, floats unchanged."""
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / np.float32(255)
    return x.astype(np.float32, copy=False)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Return (x - mean) / std per channel of an N x C x H x W float tensor, on x's device."""
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t
