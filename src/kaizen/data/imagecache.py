"""The decoded-image cache of a folder data set: one uint8 `images.npy` beside a `manifest.json`.

The manifest holds what the pixels depend on: kaizen's version, the cache format, the image settings
(data.channels, data.image_size, data.resize) and every file with its size and modification time. A cache is
used only when all of them match the folder as it is now; otherwise it is decoded again and rewritten, and the
reason is logged. One cache per data folder (the key is the folders' resolved paths), under `data.cache` or
the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import kaizen
from kaizen.data.folder import SPLITS, FolderScan, decode_many, resolve_settings
from kaizen.errors import KaizenError

if TYPE_CHECKING:
    from kaizen.config import DataConfig

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
IMAGES_FILE, MANIFEST_FILE = "images.npy", "manifest.json"


@dataclass
class FolderImages:
    """The decoded images of a scan: pixels of the decodable files in split order, and what was skipped."""

    images: np.ndarray  # N x C x H x W uint8 (memory-mapped when read from the cache)
    kept: dict[str, np.ndarray]  # per split, the indices into scan.files[split] of the rows of `images`
    problems: dict[str, str]  # path -> why it was skipped
    note: str  # "; decoded 1,234 images in 3.2 s" or "; from the cache in <dir>"


def user_cache_dir() -> Path:
    """Return the user's cache directory for kaizen (XDG_CACHE_HOME, LOCALAPPDATA or ~/.cache)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kaizen" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaizen"


def cache_dir(cfg: DataConfig, scan: FolderScan) -> Path:
    """Return the cache folder of this data set: one per set of data folders."""
    root = Path(cfg.cache) if cfg.cache else user_cache_dir() / "folders"
    key = hashlib.sha256("\n".join(str(path) for path in scan.roots).encode()).hexdigest()[:16]
    return root / key


def _settings(cfg: DataConfig) -> dict[str, Any]:
    size = cfg.image_size if isinstance(cfg.image_size, str | int) else list(cfg.image_size)
    return {"channels": cfg.channels, "image_size": size, "resize": cfg.resize}


def _file_list(scan: FolderScan) -> dict[str, list[list[Any]]]:
    """Per split, [path, size, mtime_ns] of every image file (-1, -1 when it cannot be stat'ed)."""
    listed = {}
    for split in SPLITS:
        rows = []
        for path in scan.files[split]:
            try:
                stat = path.stat()
                rows.append([str(path), stat.st_size, stat.st_mtime_ns])
            except OSError:
                rows.append([str(path), -1, -1])
        listed[split] = rows
    return listed


def cache_state(cfg: DataConfig, scan: FolderScan) -> tuple[str, dict[str, Any] | None]:
    """Return (state, manifest): state 'up to date', 'none yet' or why the cache cannot be used."""
    folder = cache_dir(cfg, scan)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return "none yet", None
    except (OSError, ValueError):
        return "unreadable manifest", None
    if not isinstance(manifest, dict):
        return "unreadable manifest", None
    if manifest.get("format") != CACHE_FORMAT or manifest.get("kaizen") != kaizen.__version__:
        return f"written by kaizen {manifest.get('kaizen')} (format {manifest.get('format')})", None
    if manifest.get("settings") != _settings(cfg):
        return f"made for other settings {manifest.get('settings')}", None
    if manifest.get("files") != _file_list(scan):
        return "files added, removed or changed since", None
    return "up to date", manifest


def load_or_decode(cfg: DataConfig, scan: FolderScan) -> FolderImages:
    """Return the scan's images from the cache when it is up to date, else decode them and write the cache.

    Raises KaizenError for an image over Pillow's decompression-bomb limit, and with data.strict for any
    image that cannot be decoded.
    """
    folder = cache_dir(cfg, scan)
    state, manifest = cache_state(cfg, scan)
    images = None
    if manifest is not None:
        try:
            images = np.load(folder / IMAGES_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            state = "unreadable images.npy"
        if images is not None and list(images.shape) != manifest.get("shape"):
            images, state = None, "images.npy does not match its manifest"
    if images is not None:
        result = FolderImages(
            images,
            {split: np.asarray(manifest["kept"][split], dtype=np.int64) for split in SPLITS},
            dict(manifest["problems"]),
            f"; decoded images from the cache {folder}",
        )
    else:
        if state != "none yet":
            log.warning("image cache %s: %s; decoding again", folder, state)
        result = _decode(cfg, scan)
        _write(folder, result, {"settings": _settings(cfg), "files": _file_list(scan)})
    if cfg.strict and result.problems:
        path, reason = next(iter(result.problems.items()))
        raise strict_error(path, reason)
    return result


def strict_error(path: str, reason: str) -> KaizenError:
    """The error for an image that cannot be decoded when data.strict is true."""
    return KaizenError(f"{path}: {reason} (data.strict is true; set it false to skip such files)")


def _decode(cfg: DataConfig, scan: FolderScan) -> FolderImages:
    import time

    start = time.perf_counter()
    channels, size, _ = resolve_settings(cfg, scan)
    files = scan.all_files()
    decoded = decode_many(files, size, channels, cfg.resize)
    for path, item in zip(files, decoded):
        if item.bomb:
            raise KaizenError(f"{path}: {item.problem}")
    problems = {str(path): item.problem for path, item in zip(files, decoded) if item.problem is not None}
    kept, pixels, offset = {}, [], 0
    for split in SPLITS:
        items = decoded[offset : offset + len(scan.files[split])]
        offset += len(items)
        kept[split] = np.array([i for i, item in enumerate(items) if item.pixels is not None], dtype=np.int64)
        pixels.extend(item.pixels for item in items if item.pixels is not None)
    images = np.stack(pixels) if pixels else np.empty((0, channels, *size), dtype=np.uint8)
    note = f"; decoded {len(images):,} images in {time.perf_counter() - start:.1f} s"
    return FolderImages(images, kept, problems, note)


def _write(folder: Path, result: FolderImages, described: dict[str, Any]) -> None:
    """Write images.npy, then the manifest that vouches for it (each atomically); warn, not fail, on error."""
    manifest = {
        "format": CACHE_FORMAT,
        "kaizen": kaizen.__version__,
        **described,
        "shape": list(result.images.shape),
        "kept": {split: result.kept[split].tolist() for split in SPLITS},
        "problems": result.problems,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST_FILE).unlink(missing_ok=True)  # no manifest may vouch for half-written pixels
        handle, temp = tempfile.mkstemp(dir=folder, suffix=".npy.part")
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, result.images, allow_pickle=False)
        os.replace(temp, folder / IMAGES_FILE)
        handle, temp = tempfile.mkstemp(dir=folder, suffix=".json.part")
        with os.fdopen(handle, "w") as stream:
            json.dump(manifest, stream)
        os.replace(temp, folder / MANIFEST_FILE)
    except OSError as error:
        log.warning("cannot write the image cache %s (%s); the next run decodes again", folder, error)
