"""CIFAR-10 and CIFAR-100 from binary records: reading, class names, wrong sizes, download with MD5."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

import kaizen
from kaizen.data import cifar, load_data
from kaizen.errors import KaizenError


def records(count: int, label_bytes: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """`count` random records; returns (bytes, labels, images N x 3 x 32 x 32). CIFAR-100's coarse byte is 99."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    head = np.stack([np.full(count, 99, np.uint8)] * (label_bytes - 1) + [labels], axis=1)
    return np.concatenate([head, images.reshape(count, -1)], axis=1).tobytes(), labels, images


def write_cifar10(folder: Path, per_file: int = 6) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    all_labels, all_images = [], []
    for seed, name in enumerate([*cifar.LAYOUTS["cifar10"].train, "test_batch.bin"]):
        data, labels, images = records(per_file, 1, seed)
        (folder / name).write_bytes(data)
        all_labels.append(labels)
        all_images.append(images)
    return np.concatenate(all_labels), np.concatenate(all_images)


def config(root: Path, name: str = "cifar10", *overrides: str) -> kaizen.Config:
    return kaizen.Config().override(
        [f"data.name={name}", f"data.root={root}", "data.download=false", *overrides]
    )


def test_cifar10_records_read_exactly(tmp_path):
    labels, images = write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-bin")
    raw = kaizen.registry.DATASETS.create("cifar10", config(tmp_path).data)
    assert raw.train_x.shape == (30, 3, 32, 32) and raw.test_x.shape == (6, 3, 32, 32)
    assert np.array_equal(raw.train_x, images[:30]) and np.array_equal(raw.test_y, labels[30:])
    assert raw.class_names[0] == "airplane" and raw.train_x.dtype == np.uint8
    data = load_data(config(tmp_path, "cifar10", "data.val_split=0").data)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10


def test_cifar100_uses_the_fine_label_and_its_names(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    train, train_labels, _ = records(8, 2)
    (folder / "train.bin").write_bytes(train)
    (folder / "test.bin").write_bytes(records(4, 2, seed=1)[0])
    (folder / "fine_label_names.txt").write_text("\n".join(f"class{i}" for i in range(100)) + "\n")
    raw = kaizen.registry.DATASETS.create("cifar100", config(tmp_path, "cifar100").data)
    assert np.array_equal(raw.train_y, train_labels)  # the fine label, not the coarse byte (99)
    assert len(raw.class_names) == 100 and raw.class_names[3] == "class3"


def test_wrong_size_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder)
    with (folder / "data_batch_3.bin").open("ab") as stream:
        stream.write(b"\x00" * 100)
    code, _, err = cli(
        monkeypatch, capsys, "data", "--set", "data.name=cifar10", "--set", f"data.root={tmp_path}"
    )
    assert code == 2 and "Traceback" not in err
    assert "data_batch_3.bin: 18,538 bytes is not a whole number of 3,073-byte records" in err


def test_missing_without_download_names_the_files(tmp_path):
    with pytest.raises(KaizenError, match="no cifar10 binary files .* data_batch_1.bin"):
        kaizen.registry.DATASETS.create("cifar10", config(tmp_path).data)


def test_download_checks_md5_and_extracts_records_only(tmp_path, monkeypatch):
    source = tmp_path / "source" / "cifar-10-batches-bin"
    write_cifar10(source)
    (source / "batches.meta.txt").write_text("\n".join(cifar.CIFAR10_NAMES[::-1]) + "\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
        data = b"print('a pickle would run code')"
        info = tarfile.TarInfo("cifar-10-batches-bin/unexpected.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    served = tmp_path / "served"
    served.mkdir()
    (served / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    layout = dataclasses.replace(cifar.LAYOUTS["cifar10"], md5=hashlib.md5(buffer.getvalue()).hexdigest())
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", layout)
    monkeypatch.setattr(cifar, "MIRRORS", [served.as_uri() + "/"])
    root = tmp_path / "data"
    cfg = kaizen.Config().override(["data.name=cifar10", f"data.root={root}"])
    raw = kaizen.registry.DATASETS.create("cifar10", cfg.data)
    assert len(raw.train_y) == 30 and raw.class_names[0] == "truck"
    extracted = sorted(path.name for path in (root / "cifar10" / "cifar-10-batches-bin").iterdir())
    assert "unexpected.py" not in extracted and "test_batch.bin" in extracted
    assert not (root / "cifar10" / "cifar-10-binary.tar.gz").exists()
    bad = dataclasses.replace(layout, md5="0" * 32)
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", bad)
    with pytest.raises(KaizenError, match="MD5"):
        kaizen.registry.DATASETS.create("cifar10", cfg.override([f"data.root={tmp_path / 'other'}"]).data)
