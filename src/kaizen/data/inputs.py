"""Inputs for prediction: an unlabeled (or labeled, labels ignored) file in any format kaizen trains on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaizen.data.csvfile import read_pixel_csv
from kaizen.data.idx import IMAGES_NDIM, read_idx
from kaizen.data.npzfile import read_npz
from kaizen.errors import KaizenError


def read_inputs(path: str | Path, input_shape: Sequence[int]) -> tuple[np.ndarray, str]:
    """Return (images N x C x H x W, uint8 or float32 as stored, kind) with kind "csv", "npz" or "idx".

    csv: Kaggle test.csv (pixel columns; a label column is ignored); npz: array `x`; idx: an images file.
    Raises KaizenError when the images are not `input_shape` (C, H, W).
    """
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"input file not found: {path}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        x, kind = read_pixel_csv(path, require_label=False)[0], "csv"
    elif name.endswith(".npz"):
        x, kind = read_npz(path, require_labels=False)[0], "npz"
    elif "idx" in name or "ubyte" in name:
        x, kind = read_idx(path, ndim=IMAGES_NDIM)[:, None], "idx"
    else:
        raise KaizenError(
            f"{path}: unsupported input file; expected .csv (Kaggle test.csv), .npz with array x, "
            "or an IDX images file (*-idx3-ubyte[.gz])"
        )
    expected = tuple(int(size) for size in input_shape)
    if tuple(x.shape[1:]) != expected:
        raise KaizenError(
            f"{path}: inputs are C x H x W = {_shape(x.shape[1:])}, but the model expects {_shape(expected)}"
        )
    return x, kind


def _shape(shape: Sequence[int]) -> str:
    return " x ".join(str(size) for size in shape)
