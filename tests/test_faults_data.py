"""Fault injection on the data and the run directory: never the wrong pixels, never two writers (issue 21).

Each test inflicts what a user, a second process or the machine does (another setting on one folder, bytes
overwritten in the cache, a file rewritten with its old size and time, a renamed file under a keep.txt, a
second `--resume`, SIGTERM, a planted symbolic link, a full disk) and checks what kaizen then does.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_folder import folder_config, make_classes, write_image

from kaizen.data import folder as folder_module
from kaizen.data import imagecache, load_data


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test caches under its own tmp_path, never in the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def load(root: Path, *overrides: str):
    return load_data(folder_config(root, "data.val_split=0", *overrides).data)


def fresh_pixels(data, resize: str = "stretch") -> np.ndarray:
    """The training split's pixels decoded again from its files now, without any cache."""
    channels, height, width = data.input_shape
    decoded = folder_module.decode_many(data.paths["train"], (height, width), channels, resize)
    return np.stack([item.pixels for item in decoded])


def loaded_pixels(data) -> np.ndarray:
    return data.pixels["train"].numpy()


def counting_decodes(monkeypatch) -> list:
    calls: list = []
    real = imagecache.iter_decoded
    monkeypatch.setattr(imagecache, "iter_decoded", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def cache_of(root: Path, *overrides: str) -> Path:
    cfg = folder_config(root, *overrides).data
    return imagecache.cache_dir(cfg, folder_module.scan_folder(cfg))


def images_file(cache: Path) -> Path:
    manifest = json.loads((cache / "manifest.json").read_text())
    return cache / manifest["images"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two classes of wide images (crop, pad and stretch make different pixels of them)."""
    root = tmp_path / "photos"
    for name, base in (("a", 40), ("b", 160)):
        for index in range(6):
            pixels = np.zeros((10, 20), dtype=np.uint8)
            pixels[:, :5] = 250  # a bright left edge: crop cuts it, stretch squeezes it, pad keeps it
            pixels[:, 5:] = base + 10 * index
            path = root / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(pixels, "L").save(path)
    return root


# --- the image cache ----------------------------------------------------------------------------------


def test_other_settings_on_one_folder_keep_their_own_caches(photos, monkeypatch, caplog):
    calls = counting_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        crop = load(photos, "data.image_size=8", "data.resize=crop")
        stretch = load(photos, "data.image_size=8", "data.resize=stretch")
        again = {
            resize: load(photos, "data.image_size=8", f"data.resize={resize}")
            for resize in ("crop", "stretch")
        }
    assert len(calls) == 2, "each setting decodes once, then both are read from their caches"
    assert "decoding again" not in caplog.text
    assert "from the cache" in again["crop"].source and "from the cache" in again["stretch"].source
    assert not np.array_equal(loaded_pixels(crop), loaded_pixels(stretch))
    for resize, data in again.items():
        assert np.array_equal(loaded_pixels(data), fresh_pixels(data, resize))
    assert cache_of(photos, "data.image_size=8", "data.resize=crop") != cache_of(
        photos, "data.image_size=8", "data.resize=stretch"
    )


def test_an_images_file_replaced_under_its_manifest_is_not_used(photos, monkeypatch, caplog):
    """Another process's pixels (same shape, other settings) put where the manifest's file is: decoded again."""
    load(photos, "data.image_size=8", "data.resize=crop")
    load(photos, "data.image_size=8", "data.resize=stretch")
    crop_file = images_file(cache_of(photos, "data.image_size=8", "data.resize=crop"))
    stretch_file = images_file(cache_of(photos, "data.image_size=8", "data.resize=stretch"))
    os.replace(stretch_file, crop_file)
    with caplog.at_level(logging.WARNING):
        data = load(photos, "data.image_size=8", "data.resize=crop")
    assert "checksum" in caplog.text and "decoding again" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data, "crop"))


def test_a_damaged_cache_is_decoded_again_never_trained_on(tmp_path, monkeypatch, caplog):
    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    load(root)
    damaged = images_file(cache_of(root))
    with open(damaged, "r+b") as stream:  # random bytes over part of the pixels
        stream.seek(damaged.stat().st_size // 2)
        stream.write(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    calls = counting_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        data = load(root)
    assert len(calls) == 1 and "damaged" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data))
    assert "from the cache" in load(root).source  # and the cache written again is good


def test_a_file_rewritten_with_its_old_size_and_time_is_noticed(tmp_path, monkeypatch, caplog):
    """`cp -p`, `rsync -t`, `touch -r`: same size, same mtime, other pixels."""
    root = tmp_path / "ds"
    for name, level in (("a", 40), ("b", 200)):
        for index in range(5):
            write_image(root / name / f"{index}.bmp", level, fmt="BMP")  # BMP: the size is the shape's
    first = load(root)
    target = root / "a" / "0.bmp"
    before = target.stat()
    time.sleep(0.05)
    write_image(target, 250, fmt="BMP")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    with caplog.at_level(logging.WARNING):
        data = load(root)
    assert "changed since" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data))
    assert not np.array_equal(loaded_pixels(data), loaded_pixels(first))


def full_disk_for(monkeypatch, folder: Path, after_bytes: int, names: tuple[str, ...] = ("",)) -> None:
    """os.write to a file under `folder` (whose name holds one of `names`) fails with ENOSPC once `after_bytes`
    have been written to such files, as a full disk does."""
    real_write = os.write
    written = [0]
    folder = str(folder.resolve())

    def write(handle, data):
        try:
            target = os.readlink(f"/proc/self/fd/{handle}")
        except OSError:
            target = ""
        if target.startswith(folder) and any(name in Path(target).name for name in names):
            if written[0] + len(data) > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[0] += len(data)
        return real_write(handle, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="finds a descriptor's file in /proc")
@pytest.mark.parametrize("where", ["pixels", "manifest"])
def test_a_full_disk_while_caching_falls_back_to_memory_and_leaves_no_part_files(
    tmp_path, monkeypatch, caplog, where
):
    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    cache = tmp_path / "full"
    if where == "pixels":
        full_disk_for(monkeypatch, cache, after_bytes=2000, names=("images",))
    else:
        full_disk_for(monkeypatch, cache, after_bytes=0, names=("manifest",))
    with caplog.at_level(logging.WARNING):
        data = load(root, f"data.cache={cache}")
    assert "No space left on device" in caplog.text
    expected = fresh_pixels(data)
    assert np.array_equal(loaded_pixels(data), expected)
    assert not [path for path in cache.rglob("*") if path.is_file() and path.name != "files.tsv"], list(
        cache.rglob("*")
    )
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    assert "decoded" in load(root, f"data.cache={cache}").source  # no manifest vouches for anything
    assert torch.equal(load(root, f"data.cache={cache}").pixels["train"], torch.from_numpy(expected))
