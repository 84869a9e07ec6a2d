"""NPZ archives holding images `x` and (for training and test files) labels `y`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from kaizen.data.arrays import as_labels, as_nchw, as_pixels
from kaizen.errors import KaizenError


def read_npz(path: str | Path, require_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (images N x C x H x W as uint8 or float32, labels 1-D or None when not required and absent)."""
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"file not found: {path}")
    try:
        # allow_pickle=False: an .npz from elsewhere must not be able to run code when loaded
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise KaizenError(f"{path}: expected an .npz archive with arrays x and y, found a single array")
        with loaded as archive:
            keys = list(archive.keys())
            for key in ["x", "y"] if require_labels else ["x"]:
                if key not in keys:
                    raise KaizenError(f"{path}: no array '{key}' (found: {', '.join(keys) or 'none'})")
            x = archive["x"]
            y = archive["y"] if "y" in keys else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise KaizenError(f"{path}: not a readable .npz archive ({error})") from None
    x = as_pixels(as_nchw(x, path), path)
    if y is not None:
        y = as_labels(y, len(x), path)
    return x, y
