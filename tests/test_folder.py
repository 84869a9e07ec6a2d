"""Image folders: layouts, colour and size, the decoded cache, `kaizen data`, and every kind of bad input."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

import kaizen
from kaizen.data import folder as folder_module
from kaizen.data import imagecache, load_data
from kaizen.data.selection import keep_text
from kaizen.errors import KaizenError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test caches under its own tmp_path, never in the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def write_image(path: Path, value: int, size=(12, 12), mode="L", fmt=None) -> Path:
    """An image of one grey level `value` (or colour (value, 0, 255 - value) in RGB), `size` (H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    if mode == "RGB":
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[..., 0], pixels[..., 2] = value, 255 - value
        image = Image.fromarray(pixels, "RGB")
    else:
        image = Image.fromarray(np.full((height, width), value, dtype=np.uint8), "L")
    image.save(path, format=fmt)
    return path


def make_classes(root: Path, counts: dict[str, int], mode="L", size=(12, 12)) -> Path:
    """root/<class>/<i>.png, each class one grey level, so a model can tell them apart."""
    for number, (name, count) in enumerate(counts.items()):
        for index in range(count):
            write_image(root / name / f"{index}.png", 40 + 80 * number + index % 5, size, mode)
    return root


def folder_config(path: Path, *overrides: str) -> kaizen.Config:
    return kaizen.Config().override(["data.name=folder", f"data.path={path}", *overrides])


def load(path: Path, *overrides: str):
    return load_data(folder_config(path, *overrides).data)


# ---------------------------------------------------------------------------------------------- layouts


def test_class_folders_hold_out_a_stratified_seeded_test_split(tmp_path):
    root = make_classes(tmp_path / "ds", {"b": 20, "a": 10})
    data = load(root, "data.test_split=0.2", "data.val_split=0.1")
    assert data.class_names == ["a", "b"]  # sorted folder names
    assert len(data.y_test) == 6 and data.y_test.bincount().tolist() == [2, 4]
    assert len(data.y_train) + len(data.y_val) == 24
    assert data.input_shape == (1, 12, 12)
    for split in ("train", "val", "test"):  # each example's file is in its class's folder
        names = [Path(path).parent.name for path in data.paths[split]]
        assert names == [data.class_names[label] for label in getattr(data, f"y_{split}").tolist()]
    again = load(root, "data.test_split=0.2", "data.val_split=0.1")
    assert again.paths == data.paths


def test_train_val_test_folders_and_a_separate_test_path(tmp_path):
    root = tmp_path / "ds"
    make_classes(root / "train", {"cat": 6, "dog": 6})
    make_classes(root / "val", {"cat": 2, "dog": 3})
    make_classes(root / "test", {"dog": 4})  # a test set may lack a class
    data = load(root)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (12, 5, 4)
    assert all("/val/" in path for path in data.paths["val"])
    assert data.y_test.tolist() == [1, 1, 1, 1]
    other = make_classes(tmp_path / "other", {"cat": 3, "dog": 3})
    separate = load(root / "train", f"data.test_path={other}")
    assert len(separate.y_test) == 6 and all(path.startswith(str(other)) for path in separate.paths["test"])


def test_recursive_hidden_ignored_non_images_skipped_and_listed(tmp_path, monkeypatch, capsys):
    root = make_classes(tmp_path / "ds", {"a": 4, "b": 4})
    write_image(root / "a" / "deeper" / "more" / "x.png", 40)
    write_image(root / "a" / ".hidden.png", 40)
    write_image(root / ".trash" / "y.png", 40)
    (root / "b" / "notes.txt").write_text("not an image")
    data = load(root, "data.val_split=0")
    assert len(data.y_train) + len(data.y_test) == 9
    assert data.class_names == ["a", "b"]
    code, out, _ = cli(monkeypatch, capsys, "data", "--set", "data.name=folder", "--set", f"data.path={root}")
    assert code == 0
    assert "skipped files: 1" in out and "notes.txt: not an image (.txt)" in out


# ------------------------------------------------------------------------------------- colour and size


def test_mixed_modes_and_sizes_become_one_shape(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "a" / "gray.png", 100, (30, 50))
    write_image(root / "a" / "rgb.jpg", 200, (40, 40), "RGB")
    rgba = Image.new("RGBA", (20, 60), (255, 0, 0, 0))  # fully transparent: shown as white
    rgba.save(root / "a" / "rgba.png")
    (root / "b").mkdir()
    Image.new("P", (16, 16), 3).save(root / "b" / "palette.gif")
    write_image(root / "b" / "x.bmp", 10, (24, 24))
    write_image(root / "b" / "y.webp", 10, (24, 24), "RGB")
    write_image(root / "b" / "z.tiff", 10, (24, 24))
    data = load(root, "data.val_split=0", "data.normalize=false")
    assert data.input_shape[0] == 3  # auto: a colour image makes it 3 channels
    assert data.input_shape[1:] == (24, 24)  # the median of heights and of widths
    x = torch.cat([data.x_train, data.x_test])
    white = [
        i for i, path in enumerate(data.paths["train"] + data.paths["test"]) if path.endswith("rgba.png")
    ]
    assert len(white) == 1 and float(x[white[0]].min()) == 1.0
    gray_only = make_classes(tmp_path / "gray", {"a": 2, "b": 2}, size=(200, 100))
    data = load(gray_only, "data.val_split=0")
    assert data.input_shape == (1, 64, 32)  # auto size keeps the aspect, capped at 64
    forced = load(gray_only, "data.val_split=0", "data.channels=3", "data.image_size=[8, 10]")
    assert forced.input_shape == (3, 8, 10)


def test_resize_crop_pad_stretch(tmp_path):
    pixels = np.zeros((8, 16), dtype=np.uint8)  # 8 high x 16 wide: black with a white middle half
    pixels[:, 4:12] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")

    def resized(resize: str) -> np.ndarray:
        decoded = folder_module.decode_image(tmp_path / "wide.png", (8, 8), 1, resize, Image.MAX_IMAGE_PIXELS)
        return decoded.pixels[0] > 127

    middle_half = [False, False, True, True, True, True, False, False]
    assert resized("crop").all()  # the centre 8 x 8 is the white half
    assert (resized("stretch") == middle_half).all()  # every row squeezed
    padded = resized("pad")  # shrunk to 4 x 8, black bars above and below
    assert padded[:, 4].tolist() == middle_half and padded[4].tolist() == middle_half


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)  # stored 10 high x 20 wide
    pixels[:, :10] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    decoded = folder_module.decode_image(path, (20, 10), 3, "stretch", Image.MAX_IMAGE_PIXELS)
    assert decoded.original == (20, 10)  # shown 20 high x 10 wide
    top, bottom = decoded.pixels[:, :8].mean(), decoded.pixels[:, 12:].mean()
    assert top > 200 and bottom < 50  # the white left half is now on top
    header = folder_module.decode_image(path, None, 3, "crop", Image.MAX_IMAGE_PIXELS)
    assert header.original == (20, 10)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("L", (8, 8), value) for value in (200, 20)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    decoded = folder_module.decode_image(tmp_path / "anim.gif", (8, 8), 1, "crop", Image.MAX_IMAGE_PIXELS)
    assert abs(int(decoded.pixels.mean()) - 200) <= 2


# ---------------------------------------------------------------------------------------------- cache


def test_cache_reused_then_rebuilt_for_changes_settings_and_versions(tmp_path, monkeypatch, caplog):
    root = make_classes(tmp_path / "ds", {"a": 5, "b": 5})
    first = load(root)
    calls = []
    real = imagecache.iter_decoded
    monkeypatch.setattr(imagecache, "iter_decoded", lambda *a, **k: calls.append(a) or real(*a, **k))
    second = load(root)
    assert calls == [] and "from the cache" in second.source
    assert np.array_equal(first.x_train.numpy(), second.x_train.numpy())
    write_image(root / "a" / "0.png", 250)  # a changed file is noticed
    os.utime(root / "a" / "0.png", ns=(1, 1))
    with caplog.at_level(logging.WARNING):
        changed = load(root)
    assert len(calls) == 1 and "changed since" in caplog.text
    assert float(changed.x_train.max()) > float(first.x_train.max())
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load(root, "data.resize=pad")  # other settings: a cache of their own, the first one is kept
        load(root)
    assert len(calls) == 2 and "decoding again" not in caplog.text
    assert len(list((tmp_path / "user-cache").rglob("manifest.json"))) == 2
    manifest_path = (
        imagecache.cache_dir(
            folder_config(root, "data.resize=pad").data, folder_module.scan_folder(folder_config(root).data)
        )
        / "manifest.json"
    )
    manifest = json.loads(manifest_path.read_text())
    manifest["kaizen"] = "0.0.1"
    manifest_path.write_text(json.dumps(manifest))
    load(root, "data.resize=pad")
    assert len(calls) == 3 and "written by kaizen 0.0.1" in caplog.text
    load(root, "data.resize=pad", f"data.cache={tmp_path / 'elsewhere'}")
    assert len(calls) == 4 and any((tmp_path / "elsewhere").rglob("images-*.npy"))


def grey_levels_match_labels(data) -> bool:
    """make_classes gives class k the grey levels 40 + 80 k ... 44 + 80 k: every image must carry its own."""
    levels = (data.x_train * torch.tensor(data.std).view(1, -1, 1, 1)) + torch.tensor(data.mean).view(
        1, -1, 1, 1
    )
    levels = (levels.mean(dim=(1, 2, 3)) * 255).round()
    return bool(((levels - 40 - 80 * data.y_train).abs() <= 4.5).all())


def test_cache_rows_follow_the_files_when_some_cannot_be_decoded(tmp_path, caplog):
    root = make_classes(tmp_path / "ds", {"a": 6, "b": 6, "c": 6})
    (root / "a" / "2-broken.png").write_bytes(b"\x89PNG not really")  # sorts between good files
    (root / "b" / "0-broken.png").write_bytes(b"")
    first = load(root, "data.val_split=0", "data.test_split=0.25")
    second = load(root, "data.val_split=0", "data.test_split=0.25")
    assert "from the cache" in second.source and len(first.y_train) + len(first.y_test) == 18
    assert grey_levels_match_labels(first) and grey_levels_match_labels(second)
    assert torch.equal(first.pixels["train"], second.pixels["train"])
    cache = next((tmp_path / "user-cache").rglob("manifest.json")).parent
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["rows"] == 18 and manifest["shape"][0] == 20 and len(manifest["problems"]) == 2
    listed = (cache / "files.tsv").read_text().splitlines()
    assert len(listed) == 21 and any("2-broken.png" in line for line in listed)


def test_cache_that_cannot_be_written_decodes_into_memory(tmp_path, monkeypatch, caplog):
    root = make_classes(tmp_path / "ds", {"a": 6, "b": 6})
    expected = load(root, f"data.cache={tmp_path / 'fine'}")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        data = load(root, f"data.cache={blocked}")
    assert "cannot write the image cache" in caplog.text and "decoded" in data.source
    assert torch.equal(data.pixels["train"], expected.pixels["train"])
    # the disk fills up after three images: the rows written so far are read back, the rest decoded in memory
    real_write = imagecache._Rows.add
    written = []

    real_write_all = imagecache._write_all

    def full_after_three(self, pixels):
        if self.memory is None and len(written) == 3:
            monkeypatch.setattr(
                imagecache,
                "_write_all",
                lambda *_: (_ for _ in ()).throw(OSError(28, "No space left on device")),
            )
        written.append(1)
        real_write(self, pixels)

    monkeypatch.setattr(imagecache._Rows, "add", full_after_three)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        data = load(root, f"data.cache={tmp_path / 'full'}")
    assert "No space left on device" in caplog.text
    assert torch.equal(data.pixels["train"], expected.pixels["train"])
    assert not list((tmp_path / "full").rglob("*.npy*")), "no half-written cache file is left"
    monkeypatch.setattr(imagecache, "_write_all", real_write_all)


# ------------------------------------------------------------------------------------------ bad input


def bad(monkeypatch, capsys, root: Path, *overrides: str) -> str:
    """Run `kaizen data` on the folder; assert exit 2 and one line without a traceback; return that line."""
    args = ["--set", "data.name=folder", "--set", f"data.path={root}"]
    code, out, err = cli(
        monkeypatch, capsys, "data", *args, *[part for o in overrides for part in ("--set", o)]
    )
    assert code == 2, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_empty_folder_one_class_and_class_without_images(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    assert "no class folders" in bad(monkeypatch, capsys, tmp_path / "empty")
    one = make_classes(tmp_path / "one", {"only": 3})
    assert "only one class (only)" in bad(monkeypatch, capsys, one)
    hollow = make_classes(tmp_path / "hollow", {"a": 3, "b": 3})
    (hollow / "c").mkdir()
    (hollow / "c" / "readme.md").write_text("x")
    assert "hollow/c: class folder without images" in bad(monkeypatch, capsys, hollow)
    assert "not a folder" in bad(monkeypatch, capsys, tmp_path / "missing")


def test_test_class_unknown_to_training(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    make_classes(root / "train", {"cat": 3, "dog": 3})
    make_classes(root / "test", {"cat": 2, "emu": 2})
    assert "class 'emu' is not among the training classes (cat, dog)" in bad(monkeypatch, capsys, root)


def test_symlink_loop(tmp_path, monkeypatch, capsys):
    root = make_classes(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "a" / "again").symlink_to(root / "a", target_is_directory=True)
    assert "symbolic link loop" in bad(monkeypatch, capsys, root)


def test_corrupt_and_truncated_images_skipped_with_warning_or_strict_error(
    tmp_path, monkeypatch, capsys, caplog
):
    root = make_classes(tmp_path / "ds", {"a": 4, "b": 4})
    jpeg = write_image(tmp_path / "full.jpg", 90, (64, 64), "RGB")
    (root / "a" / "truncated.jpg").write_bytes(jpeg.read_bytes()[:300])
    (root / "b" / "garbage.png").write_bytes(b"\x89PNG not really")
    with caplog.at_level(logging.WARNING):
        data = load(root, "data.val_split=0", "data.image_size=12")
    assert len(data.y_train) + len(data.y_test) == 8
    assert "truncated.jpg" in caplog.text and "garbage.png" in caplog.text
    err = bad(monkeypatch, capsys, root, "data.strict=true")
    assert "data.strict" in err and ("truncated.jpg" in err or "garbage.png" in err)
    code, out, _ = cli(monkeypatch, capsys, "data", "--set", "data.name=folder", "--set", f"data.path={root}")
    assert code == 0 and "skipped files: 2" in out and "garbage.png" in out


def test_decompression_bomb_names_pillows_limit(tmp_path, monkeypatch, capsys):
    root = make_classes(tmp_path / "ds", {"a": 3, "b": 3})
    write_image(root / "a" / "huge.png", 0, (100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 100 x 100 is then over twice the limit
    err = bad(monkeypatch, capsys, root)
    assert "huge.png" in err and "MAX_IMAGE_PIXELS" in err


def test_zero_size_image_is_skipped(tmp_path):
    path = write_image(tmp_path / "zero.bmp", 0, (4, 4))
    header = bytearray(path.read_bytes())
    header[18:26] = bytes(8)  # width 0, height 0
    path.write_bytes(bytes(header))
    decoded = folder_module.decode_image(path, (4, 4), 1, "crop", Image.MAX_IMAGE_PIXELS)
    assert decoded.pixels is None and decoded.problem.startswith("not a readable image")


def test_unreadable_file_skipped_or_strict_error(tmp_path, monkeypatch, capsys, caplog):
    root = make_classes(tmp_path / "ds", {"a": 3, "b": 3})
    locked = write_image(root / "a" / "locked.png", 30)
    real_open = Image.open

    def open_image(path, *args, **kwargs):  # as a file without read permission does (tests may run as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(folder_module.Image, "open", open_image)
    with caplog.at_level(logging.WARNING):
        data = load(root, "data.val_split=0", "data.image_size=12")
    assert len(data.y_train) + len(data.y_test) == 6 and "locked.png: unreadable" in caplog.text
    assert "locked.png: unreadable (Permission denied)" in bad(monkeypatch, capsys, root, "data.strict=true")


# ------------------------------------------------------------------------------------------- training


def test_trains_on_a_folder_then_eval_and_predict_name_files(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    make_classes(root / "train", {"dark": 12, "mid": 12, "light": 12}, mode="RGB", size=(10, 14))
    make_classes(root / "test", {"dark": 3, "mid": 3, "light": 3}, mode="RGB", size=(10, 14))
    odd = write_image(root / "test" / "dark" / "odd.png", 205, (10, 14), "RGB")  # a light image filed as dark
    overrides = [
        "data.image_size=8",
        "model.preset=simple_cnn",
        "train.epochs=8",
        "train.batch_size=8",
        "train.device=cpu",
    ]
    cfg = folder_config(
        root, *overrides, f"log.runs_dir={tmp_path / 'runs'}", "log.plots=false", "optim.lr=0.01"
    )
    run = kaizen.train(cfg)
    assert run.summary["test"]["acc"] >= 0.9  # three grey levels: an easy task, but for odd.png

    code, out, _ = cli(monkeypatch, capsys, "eval", str(run.path))
    assert code == 0 and f"{odd}: dark → light" in out
    assert f"{odd}: dark → light" in json.loads((run.path / "eval_test.json").read_text())["mistakes"][0]

    predictions = tmp_path / "predictions.csv"
    args = [
        "predict",
        str(run.path),
        "--input",
        str(root / "test"),
        "--input",
        str(odd),
        "--out",
        str(predictions),
    ]
    code, out, _ = cli(monkeypatch, capsys, *args)
    rows = predictions.read_text().splitlines()
    assert code == 0 and rows[0] == "path,label,probability" and len(rows) == 1 + 10 + 1
    assert rows[-1].startswith(f"{odd},light,")
    (tmp_path / "notes.txt").write_text("x")
    args = [
        "predict",
        str(run.path),
        "--input",
        str(odd),
        "--input",
        str(tmp_path / "notes.txt"),
        "--out",
        "x.csv",
    ]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2 and "notes.txt: not an image" in err

    monkeypatch.setattr(folder_module, "decode_many", lambda *a, **k: pytest.fail("summary decoded images"))
    args = ["summary", "--set", "data.name=folder", "--set", f"data.path={root}", "--set", "data.channels=3"]
    code, out, _ = cli(
        monkeypatch, capsys, *args, "--set", "data.image_size=8", "--set", "model.preset=simple_cnn"
    )
    assert code == 0 and "input 3×8×8 · 3 classes" in out


def test_data_grid_png(tmp_path, monkeypatch, capsys):
    root = make_classes(tmp_path / "ds", {"a": 3, "b": 3}, mode="RGB")
    out_png = tmp_path / "grid.png"
    code, out, _ = cli(
        monkeypatch,
        capsys,
        "data",
        "--set",
        "data.name=folder",
        "--set",
        f"data.path={root}",
        "--out",
        str(out_png),
    )
    assert code == 0 and "input: channels x height x width = 3 x 12 x 12" in out
    with Image.open(out_png) as image:
        assert image.size[0] > 100 and image.size[1] > 100


def test_describe_raises_for_missing_path(tmp_path):
    from kaizen.data.report import describe

    with pytest.raises(KaizenError, match="data.path"):
        describe(kaizen.Config().override(["data.name=folder"]).data)


def test_real_photos_train_the_default_model(tmp_path):
    from kaizen.data.samples import make_photo_folder

    root = make_photo_folder(tmp_path / "photos", per_class=30)
    data = load(root)
    assert data.input_shape[0] == 3 and max(data.input_shape[1:]) == 64  # auto: the median (~70), capped
    assert data.class_names == sorted(data.class_names) and len(data.class_names) == 4
    overrides = ["data.image_size=16", "train.epochs=15", "train.device=cpu", "log.plots=false"]
    run = kaizen.train(folder_config(root, *overrides, f"log.runs_dir={tmp_path / 'runs'}"))
    assert run.summary["test"]["acc"] >= 0.75  # 4 classes: chance is 0.25


def test_kaizen_data_counts_a_kept_subset_and_says_where_the_training_images_go(
    tmp_path, monkeypatch, capsys
):
    root = make_classes(tmp_path / "ds", {"a": 10, "b": 10})
    args = ["data", "--set", "data.name=folder", "--set", f"data.path={root}", "--set", "data.image_size=8"]
    code, out, _ = cli(monkeypatch, capsys, *args, "--set", "data.val_split=0")
    assert code == 0 and "training images 1.0 KiB: in memory" in out  # 16 examples x 1 x 8 x 8 uint8
    keep = tmp_path / "keep.txt"
    files = load(root, "data.image_size=8", "data.val_split=0").paths["train"]
    keep.write_text(
        keep_text([0, 1, 14, 15], files, root)
    )  # two of each class among the 16 left for training
    code, out, _ = cli(
        monkeypatch,
        capsys,
        *args,
        "--set",
        "data.val_split=0",
        "--set",
        f"data.keep={keep}",
        "--set",
        "data.max_memory=100",
    )
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert code == 0 and total.split()[1] == "4", out
    assert "training images 256 bytes: streamed from the host" in out and "data.max_memory" in out
    data = load(root, "data.image_size=8", "data.val_split=0", f"data.keep={keep}")
    assert len(data.y_train) == 4  # what kaizen data counted is what a run trains on
