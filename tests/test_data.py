"""Data: file formats, splits, normalisation and download, on tiny files the tests write themselves."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kaizen import registry
from kaizen.config import DataConfig
from kaizen.data import Data, load_data, normalize, read_inputs, to_float
from kaizen.data import download as dl
from kaizen.data.idx import read_idx, write_idx
from kaizen.data.splits import stratified_split, stratified_subset
from kaizen.errors import KaizenError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_T10K_IMAGES_MD5 = "9fb629c4189551a2d022fa330f9573f3"


def images_and_labels(
    n: int, side: int = 6, classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    return rng.integers(0, 256, (n, side, side), dtype=np.uint8), labels.astype(np.uint8)


def write_t10k(folder: Path, n: int = 50, suffix: str = ".gz") -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = images_and_labels(n)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", x)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y)
    return x, y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None) -> Path:
    flat = x.reshape(len(x), -1)
    header = [f"pixel{i}" for i in range(flat.shape[1])]
    rows = [",".join(map(str, row)) for row in flat]
    if y is not None:
        header = ["label", *header]
        rows = [f"{label},{row}" for label, row in zip(y, rows, strict=True)]
    path.write_text("\n".join([",".join(header), *rows]) + "\n")
    return path


def lines_with(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_idx_round_trip_gzipped_and_raw(tmp_path, name):
    x, y = images_and_labels(12)
    images = read_idx(write_idx(tmp_path / name, x), ndim=3)
    labels = read_idx(write_idx(tmp_path / f"labels-{name}", y), ndim=1)
    assert images.dtype == np.uint8 and images.flags.writeable
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


def test_idx_bad_magic_names_file_and_magic(tmp_path):
    path = tmp_path / "junk-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(
        KaizenError, match=r"junk-idx3-ubyte: not an IDX file: expected magic 0x0803, found 0x504b0304"
    ):
        read_idx(path, ndim=3)


def test_idx_labels_file_is_not_an_images_file(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    with pytest.raises(KaizenError, match="expected magic 0x0803, found 0x00000801"):
        read_idx(path, ndim=3)


def test_idx_wrong_dtype_byte(tmp_path):
    path = tmp_path / "float-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(8))
    with pytest.raises(KaizenError, match="dtype byte 0x0d"):
        read_idx(path)


def test_idx_truncated_says_expected_and_found_bytes(tmp_path):
    x, _ = images_and_labels(10, side=4)
    path = write_idx(tmp_path / "images-idx3-ubyte", x)
    path.write_bytes(path.read_bytes()[:-7])
    expected = 16 + 10 * 4 * 4
    with pytest.raises(
        KaizenError, match=rf"truncated: shape \(10, 4, 4\) needs {expected} bytes, found {expected - 7}"
    ):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    x, _ = images_and_labels(200)
    path = write_idx(tmp_path / "images-idx3-ubyte.gz", x)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(KaizenError, match="images-idx3-ubyte.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_idx_missing_file(tmp_path):
    with pytest.raises(KaizenError, match="file not found: .*nothing-idx3-ubyte"):
        read_idx(tmp_path / "nothing-idx3-ubyte")


# ------------------------------------------------------------------------------- IDX datasets


@pytest.mark.parametrize(("sub", "suffix"), [("mnist", ".gz"), ("", "")])
def test_mnist_10k_mode_on_generated_t10k_files(tmp_path, sub, suffix):
    x, y = write_t10k(tmp_path / sub, n=50, suffix=suffix)
    raw = registry.DATASETS.create("mnist", DataConfig(name="mnist", root=str(tmp_path), download=False))
    assert raw.train_x.shape == (40, 1, 6, 6) and raw.test_x.shape == (10, 1, 6, 6)
    np.testing.assert_array_equal(raw.train_x[:, 0], x[:40])
    np.testing.assert_array_equal(raw.test_y, y[40:])
    assert raw.train_y.dtype == np.int64
    assert raw.source.startswith("mnist-10k (t10k files only: first 40 train, last 10 test")
    assert raw.class_names == [str(d) for d in range(10)]


def test_full_idx_dataset_uses_train_and_t10k_files(tmp_path):
    folder = tmp_path / "fashion-mnist"
    write_t10k(folder, n=20)
    x, y = images_and_labels(30, seed=1)
    write_idx(folder / "train-images-idx3-ubyte.gz", x)
    write_idx(folder / "train-labels-idx1-ubyte", y)
    raw = registry.DATASETS.create("fashion-mnist", DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert len(raw.train_x) == 30 and len(raw.test_x) == 20
    assert raw.class_names[0] == "T-shirt/top" and "10k" not in raw.source


def test_idx_images_and_labels_disagree(tmp_path):
    write_t10k(tmp_path, n=20)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(KaizenError, match="20 images but .*t10k-labels-idx1-ubyte.gz 19 labels"):
        registry.DATASETS.create("kmnist", DataConfig(name="kmnist", root=str(tmp_path)))


def test_idx_missing_without_download_names_folder_and_files(tmp_path):
    cfg = DataConfig(name="kmnist", root=str(tmp_path / "data"), download=False)
    with pytest.raises(KaizenError) as info:
        registry.DATASETS.create("kmnist", cfg)
    message = str(info.value)
    assert str(tmp_path / "data" / "kmnist") in message
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    assert "\n" not in message


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST t10k files not present at {SHARED_MNIST}")
def test_real_mnist_10k():
    assert dl.file_md5(SHARED_MNIST / "t10k-images-idx3-ubyte.gz") == MNIST_T10K_IMAGES_MD5
    data = load_data(DataConfig(name="mnist", root=str(SHARED_MNIST), download=False, val_split=0))
    assert len(data.x_train) == 8000 and len(data.x_test) == 2000 and len(data.x_val) == 0
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert set(data.y_train.tolist()) == set(range(10)) == set(data.y_test.tolist())
    assert "mnist-10k" in data.source


# ---------------------------------------------------------------------------------------------- npz


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((40, 5, 5), np.uint8),
        ((40, 1, 5, 5), np.float32),
        ((40, 3, 5, 5), np.uint8),
        ((40, 5, 5, 3), np.float64),
    ],
)
def test_npz_layouts_and_dtypes(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, shape) if dtype == np.uint8 else rng.random(shape)).astype(dtype)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    raw = registry.DATASETS.create(
        "npz", DataConfig(name="npz", path=str(tmp_path / "d.npz"), test_split=0.25)
    )
    channels = 3 if 3 in shape[1:] else 1
    assert raw.train_x.shape == (30, channels, 5, 5) and raw.test_x.shape == (10, channels, 5, 5)
    assert raw.train_x.dtype == (np.uint8 if dtype == np.uint8 else np.float32)
    assert raw.class_names == ["0", "1", "2", "3"]
    assert sorted(np.bincount(raw.test_y).tolist()) == [2, 2, 3, 3]


def test_npz_channels_last_is_moved_first(tmp_path):
    x = np.zeros((4, 5, 5, 3), dtype=np.uint8)
    x[..., 1] = 7
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4))
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(4))
    cfg = DataConfig(name="npz", path=str(tmp_path / "d.npz"), test_path=str(tmp_path / "t.npz"))
    raw = registry.DATASETS.create("npz", cfg)
    assert (
        raw.train_x.shape == (4, 3, 5, 5)
        and (raw.train_x[:, 1] == 7).all()
        and (raw.train_x[:, 0] == 0).all()
    )


def test_npz_string_labels_become_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.array(["cat", "dog", "ant"] * 2))
    np.savez(tmp_path / "t.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array(["dog", "dog", "ant"]))
    cfg = DataConfig(name="npz", path=str(tmp_path / "d.npz"), test_path=str(tmp_path / "t.npz"))
    raw = registry.DATASETS.create("npz", cfg)
    assert raw.class_names == ["ant", "cat", "dog"] and raw.test_y.tolist() == [2, 2, 0]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 5, 5))}, r"no array 'y' \(found: x\)"),
        ({"images": np.zeros((4, 5, 5)), "y": np.zeros(4)}, r"no array 'x' \(found: images, y\)"),
        ({"x": np.zeros((4, 25)), "y": np.zeros(4)}, r"images must be .*found shape \(4, 25\)"),
        ({"x": np.zeros((4, 5, 5)), "y": np.zeros(3)}, "4 images but 3 labels"),
        (
            {"x": np.zeros((4, 5, 5)), "y": np.zeros((4, 2))},
            r"labels must be 1-D \(N,\), found shape \(4, 2\)",
        ),
        (
            {"x": np.full((4, 5, 5), 300), "y": np.zeros(4)},
            r"integer pixels must lie in 0..255, found 300..300",
        ),
        ({"x": np.zeros((4, 5, 5)), "y": np.array([0, 1, -1, 2])}, "labels must be >= 0"),
    ],
)
def test_npz_bad_content(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(KaizenError, match="d.npz: " + message):
        registry.DATASETS.create("npz", DataConfig(name="npz", path=str(tmp_path / "d.npz")))


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "d.npz").write_text("hello")
    with pytest.raises(KaizenError, match="d.npz: not a readable .npz archive"):
        registry.DATASETS.create("npz", DataConfig(name="npz", path=str(tmp_path / "d.npz")))


def test_missing_path_and_test_path(tmp_path):
    with pytest.raises(KaizenError, match="data.name = npz needs data.path"):
        registry.DATASETS.create("npz", DataConfig(name="npz"))
    with pytest.raises(KaizenError, match=f"file not found: {tmp_path / 'nope.csv'}"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(tmp_path / "nope.csv")))
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 5, 5)), y=np.zeros(4))
    cfg = DataConfig(name="npz", path=str(tmp_path / "d.npz"), test_path=str(tmp_path / "t.npz"))
    with pytest.raises(KaizenError, match=f"file not found: {tmp_path / 't.npz'}"):
        registry.DATASETS.create("npz", cfg)


# ---------------------------------------------------------------------------------------------- csv


def test_csv_happy_path_with_test_file(tmp_path):
    x, y = images_and_labels(30, side=4)
    write_csv(tmp_path / "train.csv", x, y)
    write_csv(tmp_path / "test.csv", x[:10], y[:10])
    cfg = DataConfig(name="csv", path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"))
    raw = registry.DATASETS.create("csv", cfg)
    assert raw.train_x.shape == (30, 1, 4, 4) and raw.train_x.dtype == np.uint8
    np.testing.assert_array_equal(raw.train_x[:, 0], x)
    np.testing.assert_array_equal(raw.test_y, y[:10])
    assert raw.class_names == [str(d) for d in range(10)]


def test_csv_hold_out_is_stratified(tmp_path):
    x, y = images_and_labels(100, side=3, classes=5)
    write_csv(tmp_path / "train.csv", x, y)
    raw = registry.DATASETS.create(
        "csv", DataConfig(name="csv", path=str(tmp_path / "train.csv"), test_split=0.2)
    )
    assert np.bincount(raw.test_y).tolist() == [4] * 5 and np.bincount(raw.train_y).tolist() == [16] * 5


def test_csv_wrong_column_count_names_line(tmp_path):
    x, y = images_and_labels(5, side=3)
    path = write_csv(tmp_path / "train.csv", x, y)
    lines_with(path, 4, "1,2,3")
    with pytest.raises(KaizenError, match="train.csv: line 4 has 3 columns, expected 10 as in the header"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))


def test_csv_non_numeric_pixel_names_line_and_column(tmp_path):
    x, y = images_and_labels(5, side=3)
    path = write_csv(tmp_path / "train.csv", x, y)
    lines_with(path, 3, "1,0,0,abc,0,0,0,0,0,0")
    with pytest.raises(KaizenError, match=r"train.csv: line 3, column 4 \(pixel2\): 'abc' is not a number"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))


def test_csv_non_square_pixel_count(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("label," + ",".join(f"pixel{i}" for i in range(10)) + "\n1" + ",0" * 10 + "\n")
    with pytest.raises(KaizenError, match="train.csv: 10 pixel columns do not form a square image"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))


def test_csv_missing_label_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", images_and_labels(4, side=2)[0], None)
    with pytest.raises(
        KaizenError, match=r"train.csv: no 'label' column in the header \(found pixel0,pixel1,pixel2,"
    ):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))


def test_csv_bad_label_and_empty_body(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("label,p0,p1,p2,p3\n1,0,0,0,0\n2.5,0,0,0,0\n")
    with pytest.raises(KaizenError, match="train.csv: line 3: label 2.5 is not a class index"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))
    path.write_text("label,p0,p1,p2,p3\n")
    with pytest.raises(KaizenError, match="train.csv: no data rows after the header"):
        registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path)))


def test_csv_large_file_loads_whole(tmp_path):
    # the size of Kaggle's train.csv (42,000 x 785, ~75 MB); 1,000 distinct rows repeated keep the test quick.
    # Its load time is measured against numpy in benchmarks/data_load.py, not here.
    rng = np.random.default_rng(0)
    x = (rng.random((1_000, 784)) < 0.2) * rng.integers(0, 256, (1_000, 784))
    table = io.StringIO()
    np.savetxt(table, np.column_stack([np.arange(1_000) % 10, x]), fmt="%d", delimiter=",")
    header = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
    (tmp_path / "train.csv").write_text(header + table.getvalue() * 42)
    raw = registry.DATASETS.create("csv", DataConfig(name="csv", path=str(tmp_path / "train.csv")))
    assert len(raw.train_x) + len(raw.test_x) == 42_000 and raw.train_x.shape[1:] == (1, 28, 28)


# --------------------------------------------------------------------------------------------- splits


def test_stratified_split_keeps_proportions_and_is_seeded():
    labels = np.repeat(np.arange(3), [500, 300, 200])
    rest, picked = stratified_split(labels, 0.1, seed=7)
    assert np.bincount(labels[picked]).tolist() == [50, 30, 20]
    assert len(np.intersect1d(rest, picked)) == 0 and len(rest) + len(picked) == 1000
    np.testing.assert_array_equal(picked, stratified_split(labels, 0.1, seed=7)[1])
    assert not np.array_equal(picked, stratified_split(labels, 0.1, seed=8)[1])


def test_stratified_split_by_count_and_zero():
    labels = np.arange(100) % 4
    assert len(stratified_split(labels, 20, seed=0)[1]) == 20
    rest, picked = stratified_split(labels, 0, seed=0)
    assert len(picked) == 0 and len(rest) == 100
    with pytest.raises(KaizenError, match="data.val_split = 100 examples, but only 100 are available"):
        stratified_split(labels, 100, seed=0, what="data.val_split")


def test_small_fraction_keeps_every_class():
    labels = np.repeat(np.arange(10), [910, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    subset = stratified_subset(labels, 0.02, seed=0)
    assert len(subset) == 20 and set(labels[subset]) == set(range(10))


def test_val_split_count_fraction_and_zero():
    data = load_data(DataConfig(val_split=100))
    assert len(data.x_val) == 100 and len(data.x_train) + 100 == 1797 - len(data.x_test)
    half = load_data(DataConfig(val_split=100, fraction=0.5))
    assert len(half.x_train) == round(len(data.x_train) * 0.5)
    assert set(half.y_train.tolist()) == set(range(10))
    # the validation set does not depend on the fraction, so data curves share one yardstick
    torch.testing.assert_close(half.y_val, data.y_val)
    torch.testing.assert_close(
        half.x_val * half.std[0] + half.mean[0], data.x_val * data.std[0] + data.mean[0]
    )
    empty = load_data(DataConfig(val_split=0))
    assert empty.x_val.shape == (0, 1, 8, 8) and empty.y_val.dtype == torch.int64


# ------------------------------------------------------------------------------------- load_data


def test_default_digits_load_is_complete():
    data = load_data(DataConfig())
    assert isinstance(data, Data) and data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert abs(data.x_train.mean().item()) < 1e-5 and abs(data.x_train.std().item() - 1) < 1e-3


def test_normalisation_statistics_come_from_training_split_only(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 100, (60, 2, 4, 4), dtype=np.uint8)
    test = np.full((20, 2, 4, 4), 255, dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=train, y=np.arange(60) % 3)
    np.savez(tmp_path / "t.npz", x=test, y=np.arange(20) % 3)
    cfg = DataConfig(
        name="npz", path=str(tmp_path / "d.npz"), test_path=str(tmp_path / "t.npz"), val_split=15
    )
    data = load_data(cfg)
    restored = data.x_train * torch.tensor(data.std).view(1, 2, 1, 1) + torch.tensor(data.mean).view(
        1, 2, 1, 1
    )
    expected_mean = restored.mean(dim=(0, 2, 3))
    np.testing.assert_allclose(data.mean, expected_mean.numpy(), rtol=1e-5)
    assert (
        len(data.x_train) == 45 and data.x_test.mean() > 3
    )  # the bright test set is not part of the statistics
    np.testing.assert_allclose(data.x_train.mean(dim=(0, 2, 3)).numpy(), [0, 0], atol=1e-5)
    plain = load_data(cfg.model_copy(update={"normalize": False}))
    assert plain.mean == [0.0, 0.0] and plain.std == [1.0, 1.0]
    assert plain.x_test.max().item() == 1.0


def test_to_float_and_normalize():
    x = np.array([[[[0, 255]]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_float(x), [[[[0.0, 1.0]]]])
    floats = np.array([[[[0.25]]]], dtype=np.float32)
    assert to_float(floats) is floats
    out = normalize(torch.tensor([[[[1.0]], [[3.0]]]]), mean=[1.0, 1.0], std=[1.0, 2.0])
    assert out.flatten().tolist() == [0.0, 1.0]


def test_all_dataset_names_registered():
    assert {"digits", "mnist", "fashion-mnist", "kmnist", "npz", "csv"} <= set(registry.DATASETS.names())


# ------------------------------------------------------------------------------------------- inputs


def test_read_inputs_csv_npz_idx(tmp_path):
    x, y = images_and_labels(6, side=4)
    path = write_csv(tmp_path / "test.csv", x, None)
    got, kind = read_inputs(path, (1, 4, 4))
    assert kind == "csv" and got.shape == (6, 1, 4, 4)
    np.testing.assert_array_equal(got[:, 0], x)
    assert read_inputs(write_csv(tmp_path / "labelled.csv", x, y), (1, 4, 4))[0].shape == (6, 1, 4, 4)
    np.savez(tmp_path / "in.npz", x=x)
    assert read_inputs(tmp_path / "in.npz", (1, 4, 4))[1] == "npz"
    write_idx(tmp_path / "in-idx3-ubyte.gz", x)
    assert read_inputs(tmp_path / "in-idx3-ubyte.gz", (1, 4, 4))[1] == "idx"


def test_read_inputs_shape_mismatch_and_unknown_format(tmp_path):
    path = write_csv(tmp_path / "test.csv", images_and_labels(3, side=4)[0], None)
    with pytest.raises(
        KaizenError, match="test.csv: inputs are C x H x W = 1 x 4 x 4, but the model expects 1 x 8 x 8"
    ):
        read_inputs(path, (1, 8, 8))
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(KaizenError, match="photo.png: unsupported input file"):
        read_inputs(tmp_path / "photo.png", (1, 8, 8))


# ------------------------------------------------------------------------------------------ download


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; the first `failures` requests get a 503, as a flaky mirror would."""

    failures = 0
    requests = 0

    def do_GET(self):  # noqa: N802 - the http.server hook name
        type(self).requests += 1
        if type(self).requests <= type(self).failures:
            self.send_error(503)
            return
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served; yields (base URL, folder, handler class)."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    handler = type("Handler", (_Handler,), {"failures": 0, "requests": 0})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *args: handler(*args, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served, handler
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5_and_renames(server, tmp_path):
    url, served, _ = server
    payload = b"kaizen" * 1000
    (served / "file.gz").write_bytes(payload)
    path = dl.download_file(
        "file.gz", tmp_path / "out", [url], md5=hashlib.md5(payload).hexdigest(), backoff=0
    )
    assert path.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file.gz"]


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, served, _ = server
    (served / "file.gz").write_bytes(b"tampered")
    with pytest.raises(
        KaizenError, match=r"could not download file.gz into .*MD5 \w+ does not match the expected 0{32}"
    ):
        dl.download_file("file.gz", tmp_path / "out", [url], md5="0" * 32, backoff=0)
    assert list((tmp_path / "out").iterdir()) == []


def test_download_retries_then_tries_next_mirror(server, tmp_path):
    url, served, handler = server
    (served / "file.gz").write_bytes(b"ok")
    handler.failures = 2
    path = dl.download_file("file.gz", tmp_path / "out", [url], md5=hashlib.md5(b"ok").hexdigest(), backoff=0)
    assert path.read_bytes() == b"ok" and handler.requests == 3
    missing = url + "missing/"
    dl.download_file("file.gz", tmp_path / "again", [missing, url], retries=2, backoff=0)
    assert (tmp_path / "again" / "file.gz").read_bytes() == b"ok"


def test_download_all_mirrors_fail(tmp_path):
    with pytest.raises(KaizenError, match="could not download f.gz into .*nowhere/f.gz"):
        dl.download_file(
            "f.gz", tmp_path / "out", [(tmp_path / "nowhere").as_uri() + "/"], retries=2, backoff=0
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_download_from_file_url(tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.gz").write_bytes(b"data")
    mirror = (tmp_path / "mirror").as_uri() + "/"
    path = dl.download_file(
        "f.gz", tmp_path / "out", [mirror], md5=hashlib.md5(b"data").hexdigest(), backoff=0
    )
    assert path.read_bytes() == b"data"


def test_mnist_builder_downloads_missing_files(server, tmp_path, monkeypatch):
    url, served, _ = server
    x, y = images_and_labels(30, side=5)
    checksums = {}
    for name, array in [("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y)]:
        checksums[name] = hashlib.md5(write_idx(served / name, array).read_bytes()).hexdigest()
    for name, array in [("t10k-images-idx3-ubyte.gz", x[:10]), ("t10k-labels-idx1-ubyte.gz", y[:10])]:
        checksums[name] = hashlib.md5(write_idx(served / name, array).read_bytes()).hexdigest()
    monkeypatch.setitem(dl.MIRRORS, "mnist", [url])
    monkeypatch.setitem(dl.CHECKSUMS, "mnist", checksums)
    raw = registry.DATASETS.create("mnist", DataConfig(name="mnist", root=str(tmp_path / "data")))
    assert len(raw.train_x) == 30 and len(raw.test_x) == 10
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(checksums)
