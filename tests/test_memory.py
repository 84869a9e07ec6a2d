"""Memory: uint8 images on the device normalised per batch, and training images streamed when over data.max_memory."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli
from test_folder import make_classes

import kaizen
from kaizen.data import load_data, normalize, to_float
from kaizen.data.selection import keep_text
from kaizen.sizes import parse_bytes


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


TINY_FOLDER = [
    "data.name=folder",
    "data.image_size=8",
    "model.preset=mlp",
    "model.hidden=[32]",
    "train.epochs=3",
    "train.batch_size=8",
    "train.device=cpu",
    "log.plots=false",
]


def folder(tmp_path: Path) -> Path:
    """Three classes of RGB images in class folders (a seeded test split is held out)."""
    return make_classes(tmp_path / "ds", {"dark": 14, "mid": 14, "light": 14}, mode="RGB", size=(9, 11))


def metrics_without_seconds(run: kaizen.Run) -> list[dict[str, str]]:
    with (run.path / "metrics.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [{key: value for key, value in row.items() if "seconds" not in key} for row in rows]


def test_parse_bytes_units_and_bad_sizes():
    assert parse_bytes(123) == 123
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5k") == 1500
    for bad in ("lots", "0", "-1", "2XB", 0):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_bad_max_memory_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = cli(
        monkeypatch, capsys, "train", "--set", "data.max_memory=lots", "--set", f"log.runs_dir={tmp_path}"
    )
    assert code == 2
    assert "data.max_memory" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # no run directory was started


def test_uint8_images_stay_uint8_and_normalise_as_float32_did(tmp_path):
    data = load_data(kaizen.Config().override([*TINY_FOLDER, f"data.path={folder(tmp_path)}"]).data)
    assert all(pixels.dtype == torch.uint8 for pixels in data.pixels.values())
    stored = data.pixels["train"].numpy()
    floats = to_float(stored)  # the float32 images load_data used to keep
    assert data.mean == floats.mean(axis=(0, 2, 3), dtype=np.float64).tolist()
    expected = normalize(torch.from_numpy(floats), data.mean, data.std)
    assert torch.equal(data.x_train, expected)
    index = torch.tensor([5, 0, 3])
    assert torch.equal(data.train_batch(index), expected[index])
    assert data.x_val.dtype == torch.float32 and data.x_val.shape[1:] == data.pixels["val"].shape[1:]


@pytest.mark.parametrize("extra", [[], ["train.bootstrap=true"]], ids=["plain", "bootstrap"])
def test_streamed_training_gives_the_same_metrics_as_in_memory(tmp_path, caplog, extra):
    root = folder(tmp_path)
    runs = []
    for budget in ("1GB", "100"):  # 100 bytes: the training images (3 x 8 x 8 each) do not fit
        cfg = kaizen.Config().override(
            [
                *TINY_FOLDER,
                f"data.path={root}",
                f"data.max_memory={budget}",
                *extra,
                f"log.runs_dir={tmp_path / budget}",
            ]
        )
        runs.append(kaizen.train(cfg))
    memory, streamed = runs
    assert "streamed from the host" not in memory.summary["data"]["source"]
    assert "streamed from the host" in streamed.summary["data"]["source"]
    assert "streaming them from the host" in caplog.text
    assert metrics_without_seconds(memory) == metrics_without_seconds(streamed)
    assert memory.summary["test"] == streamed.summary["test"]


def test_streamed_data_reads_whole_splits_and_batches_like_in_memory(tmp_path):
    root = folder(tmp_path)
    memory = load_data(kaizen.Config().override([*TINY_FOLDER, f"data.path={root}"]).data)
    streamed = load_data(
        kaizen.Config().override([*TINY_FOLDER, f"data.path={root}", "data.max_memory=1"]).data
    )
    assert streamed.host_train is not None and "train" not in streamed.pixels
    # the held-out test split does not copy the training images: they are streamed from the cache file itself
    assert isinstance(streamed.host_train.array, np.memmap)
    assert (memory.mean, memory.std) == (streamed.mean, streamed.std)
    assert torch.equal(memory.x_train, streamed.x_train)
    indices = [torch.tensor([3, 1]), torch.tensor([0]), torch.tensor([7, 2, 5])]
    for ours, theirs in zip(memory.train_batches(indices), streamed.train_batches(indices), strict=True):
        assert torch.equal(ours, theirs)
    subset = torch.tensor([4, 4, 0])
    assert torch.equal(memory.take_train(subset).x_train, streamed.take_train(subset).x_train)


def test_a_kept_subset_streams_from_the_cache_file_and_matches_memory(tmp_path):
    root = folder(tmp_path)
    keep = tmp_path / "keep.txt"
    files = load_data(kaizen.Config().override([*TINY_FOLDER, f"data.path={root}", "data.val_split=0"]).data)
    keep.write_text(keep_text(list(range(0, 33, 2)), files.paths["train"], root))  # 17 of the 33 examples
    settings = [*TINY_FOLDER, f"data.path={root}", f"data.keep={keep}", "data.val_split=3"]
    memory = load_data(kaizen.Config().override(settings).data)
    streamed = load_data(kaizen.Config().override([*settings, "data.max_memory=1"]).data)
    # the keep file selects what trains: the 3 validation examples are drawn from all 33 first and stay,
    # and the kept ones outside them train
    kept = {files.paths["train"][index] for index in range(0, 33, 2)}
    assert len(memory.y_val) == 3 and set(memory.paths["train"]) == kept - set(memory.paths["val"])
    assert isinstance(streamed.host_train.array, np.memmap)
    assert torch.equal(memory.x_train, streamed.x_train) and torch.equal(memory.x_val, streamed.x_val)
    assert torch.equal(memory.y_train, streamed.y_train) and memory.paths == streamed.paths
