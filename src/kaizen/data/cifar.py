"""CIFAR-10 and CIFAR-100 from their binary distributions: fixed-size records of label bytes and 3x32x32 pixels.

Only the binary version is read: the Python version is a pickle, and a pickle from the internet can run code.
Files are looked for under `<data.root>/<name>/` and `<data.root>/`; when missing (and data.download allows)
the official tarball is downloaded with its MD5 checked and the record files are extracted.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kaizen import registry
from kaizen.data import download
from kaizen.errors import KaizenError

if TYPE_CHECKING:
    from kaizen.config import DataConfig
    from kaizen.data.datasets import RawData

PIXELS = 3 * 32 * 32
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR binary distribution keeps its records, and how a record is laid out."""

    folder: str  # the folder inside the tarball
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes before the pixels; the class is the last of them (CIFAR-100: coarse, fine)
    classes: int
    names_file: str
    tarball: str
    md5: str

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS


LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-bin",
        train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test=("test_batch.bin",),
        label_bytes=1,
        classes=10,
        names_file="batches.meta.txt",
        tarball="cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-binary",
        train=("train.bin",),
        test=("test.bin",),
        label_bytes=2,
        classes=100,
        names_file="fine_label_names.txt",
        tarball="cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
    ),
}
MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]


def read_records(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """Return (images N x 3 x 32 x 32 uint8, labels int64) of one binary record file."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise KaizenError(f"{path}: cannot read ({error.strerror or error})") from None
    if raw.size == 0 or raw.size % layout.record:
        raise KaizenError(
            f"{path}: {raw.size:,} bytes is not a whole number of {layout.record:,}-byte records "
            "(a damaged or wrong file; delete it to download again)"
        )
    records = raw.reshape(-1, layout.record)
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    if labels.max() >= layout.classes:
        raise KaizenError(f"{path}: label {labels.max()} is out of range 0..{layout.classes - 1}")
    return np.ascontiguousarray(records[:, layout.label_bytes :]).reshape(-1, 3, 32, 32), labels


def _find(root: Path, name: str, layout: CifarLayout) -> Path | None:
    """Return the folder holding all of the layout's record files, or None."""
    for folder in (root / name / layout.folder, root / layout.folder, root / name, root):
        if all((folder / file).is_file() for file in (*layout.train, *layout.test)):
            return folder
    return None


def _download(root: Path, name: str, layout: CifarLayout) -> Path:
    target = root / name
    archive = download.download_file(layout.tarball, target, MIRRORS, layout.md5)
    wanted = {f"{layout.folder}/{file}" for file in (*layout.train, *layout.test, layout.names_file)}
    try:
        with tarfile.open(archive) as tar:
            members = [member for member in tar.getmembers() if member.name in wanted]
            tar.extractall(target, members=members, filter="data")  # "data": no links or paths out of target
    except (tarfile.TarError, OSError) as error:
        raise KaizenError(f"{archive}: cannot extract ({error}); delete it to download again") from None
    archive.unlink()
    return target / layout.folder


def _class_names(folder: Path, layout: CifarLayout, name: str) -> list[str]:
    names_path = folder / layout.names_file
    if names_path.is_file():
        names = [line.strip() for line in names_path.read_text().splitlines() if line.strip()]
        if len(names) == layout.classes:
            return names
    return CIFAR10_NAMES if name == "cifar10" else [str(c) for c in range(layout.classes)]


def _builder(name: str):
    def build(cfg: DataConfig) -> RawData:
        from kaizen.data.datasets import RawData

        layout = LAYOUTS[name]
        root = Path(cfg.root)
        folder = _find(root, name, layout)
        if folder is None:
            if not cfg.download:
                raise KaizenError(
                    f"no {name} binary files in {root / name / layout.folder}: expected "
                    f"{', '.join((*layout.train, *layout.test))} (or set data.download=true)"
                )
            folder = _download(root, name, layout)
        parts = {
            split: [read_records(folder / file, layout) for file in files]
            for split, files in (("train", layout.train), ("test", layout.test))
        }
        train_x, train_y = (np.concatenate(arrays) for arrays in zip(*parts["train"]))
        test_x, test_y = (np.concatenate(arrays) for arrays in zip(*parts["test"]))
        source = f"{name} ({len(train_x):,} train / {len(test_x):,} test, binary records in {folder})"
        return RawData(train_x, train_y, test_x, test_y, _class_names(folder, layout, name), source)

    build.__doc__ = f"{name} from its binary distribution under data.root (downloaded with MD5 when missing)."
    return build


for _name in LAYOUTS:
    registry.DATASETS.register(_name, shape=lambda cfg, n=LAYOUTS[_name].classes: ((3, 32, 32), n))(_builder(_name))
