"""Checks at the data boundary that turn user arrays into the shapes and types the rest of kaizen trusts.

Images become N x C x H x W, uint8 (0..255) or float32 (already scaled); labels become int64 0..K-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kaizen.errors import KaizenError

_CHANNELS = (1, 3)


def as_nchw(x: np.ndarray, source: str | Path) -> np.ndarray:
    """Return images as N x C x H x W: N x H x W gains a channel axis, N x H x W x C (C = 1 or 3) is moved."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in _CHANNELS and x.shape[1] not in _CHANNELS:
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x
    raise KaizenError(
        f"{source}: images must be N x H x W, N x C x H x W or N x H x W x C, found shape {x.shape}"
    )


def as_pixels(x: np.ndarray, source: str | Path) -> np.ndarray:
    """Return pixels as uint8 (integers in 0..255) or float32 (floats, kept as they are)."""
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise KaizenError(f"{source}: integer pixels must lie in 0..255, found {x.min()}..{x.max()}")
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise KaizenError(f"{source}: pixels contain NaN or infinity")
        return x
    raise KaizenError(f"{source}: pixels must be numbers, found dtype {x.dtype}")


def as_labels(y: np.ndarray, count: int, source: str | Path) -> np.ndarray:
    """Return labels as a 1-D array of `count` entries (integers or strings; N x 1 is flattened)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise KaizenError(f"{source}: labels must be 1-D (N,), found shape {y.shape}")
    if len(y) != count:
        raise KaizenError(f"{source}: {count} images but {len(y)} labels")
    if y.dtype.kind in "US":
        return y
    if y.dtype.kind == "f":
        bad = y[~np.isfinite(y) | (y != np.round(y))]
        if bad.size:
            raise KaizenError(f"{source}: labels must be whole numbers, found {bad[0]:g}")
    if y.dtype.kind not in "iuf" and y.dtype != np.bool_:
        raise KaizenError(f"{source}: labels must be integers or strings, found dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise KaizenError(f"{source}: labels must be >= 0, found {y.min()}")
    return y.astype(np.int64)


def encode_labels(*label_sets: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Return the label sets as int64 class indices and the class names they share.

    Integer labels 0..K-1 keep their values (names '0'..'K-1'); string labels are numbered in sorted order.
    """
    if any(labels.dtype.kind in "US" for labels in label_sets):
        names, inverse = np.unique(
            np.concatenate([labels.astype(str) for labels in label_sets]), return_inverse=True
        )
        bounds = np.cumsum([len(labels) for labels in label_sets])[:-1]
        return [part.astype(np.int64) for part in np.split(inverse, bounds)], [str(name) for name in names]
    top = max((int(labels.max()) for labels in label_sets if labels.size), default=-1)
    return [labels.astype(np.int64) for labels in label_sets], [str(c) for c in range(top + 1)]
