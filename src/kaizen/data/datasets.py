"""Dataset builders, registered by name in `registry.DATASETS`: each takes a DataConfig, returns RawData.

RawData is the dataset as stored: a train and a test split (x N x C x H x W, uint8 0..255 or float32 already
scaled; y int64), class names and a human description of where it came from. A split may be some rows of its
array (`train_rows`, `test_rows`), so splits of one memory-mapped cache are never copied before a run takes
what it keeps in memory. Validation split, subset and normalisation happen later, in `kaizen.data.load_data`,
the same way for every dataset.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kaizen import registry
from kaizen.data import download
from kaizen.data.arrays import encode_labels
from kaizen.data.csvfile import read_pixel_csv
from kaizen.data.idx import IMAGES_NDIM, LABELS_NDIM, read_idx
from kaizen.data.npzfile import read_npz
from kaizen.data.raw import RawData
from kaizen.data.splits import stratified_split
from kaizen.errors import KaizenError

if TYPE_CHECKING:  # config imports this module (through the registry) while it is being built
    from kaizen.config import DataConfig

DIGIT_NAMES = [str(digit) for digit in range(10)]
IDX_CLASS_NAMES = {
    "mnist": DIGIT_NAMES,
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}
MNIST_10K_TRAIN = 0.8  # of the t10k files: the first 8,000 train, the last 2,000 test


# ------------------------------------------------------------------------------------------- digits


@registry.DATASETS.register("digits", shape=lambda cfg: ((1, 8, 8), 10))
def digits_dataset(cfg: DataConfig) -> RawData:
    """scikit-learn's bundled 1,797 8x8 digits, scaled to [0, 1], with a stratified test hold-out."""
    x, y = _digits_arrays()
    train, test = stratified_split(y, cfg.test_split, cfg.split_seed, what="data.test_split")
    return RawData(
        x[train],
        y[train],
        x[test],
        y[test],
        DIGIT_NAMES,
        f"digits (scikit-learn, 1,797 8x8 images; {len(test):,} held out for test, seed {cfg.split_seed})",
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return (x N x 1 x 8 x 8 float32 in [0, 1], y int64) of scikit-learn's digits."""
    # Importing sklearn.datasets costs about a second (scipy); the bundled file itself parses in milliseconds.
    spec = importlib.util.find_spec("sklearn")
    bundled = (
        Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    )
    table = None
    if bundled is not None and bundled.is_file():
        with gzip.open(bundled, "rt") as stream:
            table = np.loadtxt(stream, delimiter=",", dtype=np.float32)
    if table is not None and table.shape == (1797, 65):
        images, target = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.data.astype(np.float32), bunch.target
    return (images / 16.0).reshape(-1, 1, 8, 8), target.astype(np.int64)


# ------------------------------------------------------------------------------------- IDX datasets


_STEMS = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "t10k-images": "t10k-images-idx3-ubyte",
    "t10k-labels": "t10k-labels-idx1-ubyte",
}


def _idx_builder(name: str) -> Callable[[DataConfig], RawData]:
    def builder(cfg: DataConfig) -> RawData:
        return load_idx_dataset(name, cfg)

    builder.__doc__ = f"{name} from IDX files under data.root (mnist-10k mode when only t10k files exist)."
    return builder


for _name in IDX_CLASS_NAMES:
    _classes = len(IDX_CLASS_NAMES[_name])
    registry.DATASETS.register(_name, shape=lambda cfg, n=_classes: ((1, 28, 28), n))(_idx_builder(_name))


def load_idx_dataset(name: str, cfg: DataConfig) -> RawData:
    """Return an MNIST-family dataset from `<root>/<name>/` or `<root>/`, downloading when allowed.

    With only the t10k files present, it is "mnist-10k" mode: the first 80% (8,000) train, the rest test.
    """
    root = Path(cfg.root)
    folders = [root / name, root]
    found = [_idx_files(folder) for folder in folders]
    full = next((files for files in found if all(files.values())), None)
    t10k = next((files for files in found if files["t10k-images"] and files["t10k-labels"]), None)
    if full is None and t10k is None:
        if not cfg.download:
            raise KaizenError(
                f"no {name} IDX files in {root / name} or {root}: expected "
                f"{', '.join(stem + '[.gz]' for stem in _STEMS.values())} (or set data.download=true)"
            )
        download.download_dataset(name, root / name)
        full = _idx_files(root / name)
    classes = IDX_CLASS_NAMES[name]
    if full is not None:
        train_x, train_y = _read_pair(full["train-images"], full["train-labels"], len(classes))
        test_x, test_y = _read_pair(full["t10k-images"], full["t10k-labels"], len(classes))
        folder = full["train-images"].parent
        source = f"{name} ({len(train_x):,} train / {len(test_x):,} test, IDX files in {folder})"
        return RawData(train_x, train_y, test_x, test_y, classes, source)
    x, y = _read_pair(t10k["t10k-images"], t10k["t10k-labels"], len(classes))
    cut = round(len(x) * MNIST_10K_TRAIN)
    source = (
        f"{name}-10k (t10k files only: first {cut:,} train, last {len(x) - cut:,} test; "
        f"from {t10k['t10k-images'].parent})"
    )
    return RawData(x[:cut], y[:cut], x[cut:], y[cut:], classes, source)


def _idx_files(folder: Path) -> dict[str, Path | None]:
    """Map each of the four IDX files to its path in `folder` (gzipped preferred), or None when absent."""
    found: dict[str, Path | None] = {}
    for key, stem in _STEMS.items():
        candidates = [folder / f"{stem}.gz", folder / stem]
        found[key] = next((path for path in candidates if path.is_file()), None)
    return found


def _read_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, ndim=IMAGES_NDIM)
    labels = read_idx(labels_path, ndim=LABELS_NDIM)
    if len(images) != len(labels):
        raise KaizenError(
            f"{images_path} holds {len(images):,} images but {labels_path} {len(labels):,} labels"
        )
    if labels.size and labels.max() >= num_classes:
        raise KaizenError(f"{labels_path}: label {labels.max()} is out of range 0..{num_classes - 1}")
    return images[:, None], labels.astype(np.int64)


# ---------------------------------------------------------------------------------------- npz, csv


@registry.DATASETS.register("npz", shape=None)
def npz_dataset(cfg: DataConfig) -> RawData:
    """Arrays `x` (images) and `y` (labels) from data.path; test from data.test_path or a hold-out."""
    return _from_files(cfg, "npz", lambda path: read_npz(path, require_labels=True))


@registry.DATASETS.register("csv", shape=None)
def csv_dataset(cfg: DataConfig) -> RawData:
    """Kaggle digit-recogniser CSV (label,pixel0..) from data.path; test from data.test_path or a hold-out."""
    return _from_files(cfg, "csv", lambda path: read_pixel_csv(path, require_label=True))


def _from_files(cfg: DataConfig, kind: str, read: Callable[[str], tuple[np.ndarray, np.ndarray]]) -> RawData:
    if cfg.path is None:
        raise KaizenError(f"data.name = {kind} needs data.path, the training file")
    x, y = read(cfg.path)
    if cfg.test_path is not None:
        test_x, test_y = read(cfg.test_path)
        if test_x.shape[1:] != x.shape[1:]:
            raise KaizenError(
                f"{cfg.test_path}: test images are {_shape(test_x)}, "
                f"but training images in {cfg.path} are {_shape(x)}"
            )
        (y, test_y), class_names = encode_labels(y, test_y)
        source = f"{kind} {cfg.path} ({len(x):,} train) + {cfg.test_path} ({len(test_x):,} test)"
        return RawData(x, y, test_x, test_y, class_names, source)
    (y,), class_names = encode_labels(y)
    train, test = stratified_split(y, cfg.test_split, cfg.split_seed, what="data.test_split")
    source = f"{kind} {cfg.path} ({len(test):,} of {len(x):,} held out for test, split seed {cfg.split_seed})"
    return RawData(x[train], y[train], x[test], y[test], class_names, source)


def _shape(x: np.ndarray) -> str:
    return " x ".join(str(size) for size in x.shape[1:])

