"""The decoded-image cache of a folder data set: one uint8 `images.npy` beside a `manifest.json`.

The manifest holds what the pixels depend on: kaizen's version, the cache format, the image settings
(data.channels, data.image_size, data.resize) and a digest of every file's path, size and modification time
(the list itself is written beside it, `files.tsv`, for people: checking a manifest that held it took 15 MiB
of memory at its peak for 20,000 files). A cache is used only when all of them match the folder as it is now; otherwise it is
decoded again and rewritten, and the reason is logged. One cache per data folder (the key is the folders'
resolved paths), under `data.cache` or the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import kaizen
from kaizen.data.folder import SPLITS, FolderScan, iter_decoded, resolve_settings
from kaizen.errors import KaizenError

if TYPE_CHECKING:
    from kaizen.config import DataConfig

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
IMAGES_FILE, MANIFEST_FILE, FILES_FILE = "images.npy", "manifest.json", "files.tsv"


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


def _file_lines(scan: FolderScan) -> Iterator[str]:
    """Yield "split<TAB>path<TAB>size<TAB>mtime_ns" of every image file (-1, -1 when it cannot be stat'ed)."""
    for split in SPLITS:
        for path in scan.files[split]:
            try:
                stat = os.stat(path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:
                size = mtime = -1
            yield f"{split}\t{path}\t{size}\t{mtime}\n"


def _files_digest(scan: FolderScan) -> str:
    digest = hashlib.sha256()
    for line in _file_lines(scan):
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_state(
    cfg: DataConfig, scan: FolderScan, digest: str | None = None
) -> tuple[str, dict[str, Any] | None]:
    """Return (state, manifest): state 'up to date', 'none yet' or why the cache cannot be used. `digest` is
    the file list's (`_files_digest`) when the caller has taken it already."""
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
    if manifest.get("files_sha256") != (digest or _files_digest(scan)):
        return "files added, removed or changed since", None
    if not _rows_valid(manifest, scan):  # hand-edited or damaged: its rows cannot be trusted
        return "damaged manifest (kept or problems missing, out of range or not its rows)", None
    return "up to date", manifest


def load_or_decode(cfg: DataConfig, scan: FolderScan) -> FolderImages:
    """Return the scan's images from the cache when it is up to date, else decode them and write the cache.

    Raises KaizenError for an image over Pillow's decompression-bomb limit, and with data.strict for any
    image that cannot be decoded.
    """
    folder = cache_dir(cfg, scan)
    # one pass over the files' sizes and times, before any decoding: a file changed while it is decoded makes
    # the next run decode again
    digest = _files_digest(scan)
    state, manifest = cache_state(cfg, scan, digest)
    images = None
    if manifest is not None:
        images = _open_images(folder, manifest)
        if images is None:
            state = "images.npy unreadable or not what its manifest says"
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
        result = _decode(cfg, scan, folder, {"settings": _settings(cfg), "files_sha256": digest})
    if cfg.strict and result.problems:
        path, reason = next(iter(result.problems.items()))
        raise strict_error(path, reason)
    return result


def _rows_valid(manifest: dict[str, Any], scan: FolderScan) -> bool:
    """Whether the manifest's `kept` lists, per split, increasing indices into that split's files, `rows` in
    all and no more than images.npy holds, and `problems` maps file names to reasons."""
    kept, problems, rows, shape = (manifest.get(key) for key in ("kept", "problems", "rows", "shape"))
    if not (isinstance(kept, dict) and isinstance(problems, dict) and isinstance(rows, int)):
        return False
    if not (isinstance(shape, list) and shape and isinstance(shape[0], int) and 0 <= rows <= shape[0]):
        return False
    if not all(isinstance(path, str) and isinstance(reason, str) for path, reason in problems.items()):
        return False
    total = 0
    for split in SPLITS:
        indices = kept.get(split)
        if not isinstance(indices, list) or not all(type(index) is int for index in indices):
            return False
        if indices and (indices[0] < 0 or indices[-1] >= len(scan.files[split])):
            return False
        if any(later <= earlier for earlier, later in zip(indices, indices[1:])):
            return False
        total += len(indices)
    return total == rows


def _open_images(folder: Path, manifest: dict[str, Any]) -> np.ndarray | None:
    """Return the cache's images memory-mapped (its first `rows`), or None when the file does not match."""
    try:
        images = np.load(folder / IMAGES_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    rows = manifest.get("rows")
    if list(images.shape) != manifest.get("shape") or images.dtype != np.uint8 or not isinstance(rows, int):
        return None
    return images[:rows]


def strict_error(path: str, reason: str) -> KaizenError:
    """The error for an image that cannot be decoded when data.strict is true."""
    return KaizenError(f"{path}: {reason} (data.strict is true; set it false to skip such files)")


def _decode(cfg: DataConfig, scan: FolderScan, folder: Path, described: dict[str, Any]) -> FolderImages:
    """Decode every file of the scan into the cache (and write its manifest); return the cached images.

    Each image is written to the cache file as it arrives from the decoding processes, so a first run holds
    no more pixels in memory than a second (and a folder larger than memory can be decoded). Decodable images
    take the rows in file order; the rows of files that cannot be decoded stay unused at the end. Where the
    cache cannot be written, the pixels are kept in memory instead.
    """
    start = time.perf_counter()
    channels, size, _ = resolve_settings(cfg, scan)
    files = scan.all_files()
    shape = (len(files), channels, *size)
    decoded = np.zeros(len(files), dtype=bool)
    problems: dict[str, str] = {}
    with _Rows(folder, shape) as rows:
        for number, (path, item) in enumerate(zip(files, iter_decoded(files, size, channels, cfg.resize))):
            if item.bomb:
                raise KaizenError(f"{path}: {item.problem}")
            if item.pixels is None:
                problems[path] = item.problem
            else:
                rows.add(item.pixels)
                decoded[number] = True
        kept, offset = {}, 0
        for split in SPLITS:
            kept[split] = np.flatnonzero(decoded[offset : offset + len(scan.files[split])]).astype(np.int64)
            offset += len(scan.files[split])
        manifest = {
            "format": CACHE_FORMAT,
            "kaizen": kaizen.__version__,
            **described,
            "shape": list(shape),
            "rows": rows.count,
            "kept": {split: kept[split].tolist() for split in SPLITS},
            "problems": problems,
        }
        images = rows.finish(scan, manifest)
    note = f"; decoded {len(images):,} images in {time.perf_counter() - start:.1f} s"
    return FolderImages(images, kept, problems, note)


class _Rows:
    """Where decoded images go, in order: the cache's images file (.npy, written as they come, so they sit
    in the page cache, not in this process) or, when it cannot be written, an array in memory."""

    def __init__(self, folder: Path, shape: tuple[int, ...]) -> None:
        self.folder, self.shape, self.count, self.header = folder, shape, 0, 0
        self.memory: np.ndarray | None = None
        self.temp: Path | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MANIFEST_FILE).unlink(missing_ok=True)  # no manifest may vouch for half-written pixels
            handle, name = tempfile.mkstemp(dir=folder, suffix=".npy.part")
            self.temp, self.stream = Path(name), os.fdopen(handle, "wb")
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(self.stream, header)
            self.header = self.stream.tell()
        except OSError as error:
            self._to_memory(error)

    def add(self, pixels: np.ndarray) -> None:
        if self.memory is None:
            try:
                self.stream.write(pixels.tobytes())
            except OSError as error:
                self._to_memory(error)
        if self.memory is not None:
            self.memory[self.count] = pixels
        self.count += 1

    def _to_memory(self, error: OSError) -> None:
        """Carry on in memory: the rows written so far are read back, the file goes."""
        log.warning(
            "cannot write the image cache %s (%s); decoding into memory, the next run decodes again",
            self.folder,
            error,
        )
        self.memory = np.empty(self.shape, dtype=np.uint8)
        if self.temp is not None:
            self.stream.close()
            if self.count:
                size = self.count * int(np.prod(self.shape[1:]))
                written = np.fromfile(self.temp, np.uint8, size, offset=self.header)
                self.memory[: self.count] = written.reshape(self.count, *self.shape[1:])
            self._discard()

    def finish(self, scan: FolderScan, manifest: dict[str, Any]) -> np.ndarray:
        """Return the images: memory-mapped from the cache, once it and its manifest are written."""
        if self.memory is None:
            try:
                self.stream.truncate(self.header + int(np.prod(self.shape)))  # the unused rows (sparse)
                self.stream.close()
            except OSError as error:
                self._to_memory(error)
        if self.memory is not None:
            return self.memory[: self.count]
        if _commit(self.folder, self.temp, scan, manifest):
            self.temp = None
            images = _open_images(self.folder, manifest)
            if images is not None:
                return images
        # no manifest vouches for the file: read it whole and let the next run decode again
        written = self.temp if self.temp is not None and self.temp.exists() else self.folder / IMAGES_FILE
        images = np.load(written, allow_pickle=False)[: self.count]
        self._discard()
        return images

    def _discard(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None

    def __enter__(self) -> _Rows:
        return self

    def __exit__(self, *exc: object) -> None:  # an error (or Ctrl-C) while decoding: no half-written file
        if self.temp is not None:
            self.stream.close()
            self._discard()


def _commit(folder: Path, temp: Path, scan: FolderScan, manifest: dict[str, Any]) -> bool:
    """Move the decoded images into place, write files.tsv, then the manifest that vouches for them (each
    atomically); warn and return False on error."""
    try:
        os.replace(temp, folder / IMAGES_FILE)
        handle, name = tempfile.mkstemp(dir=folder, suffix=".tsv.part")
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as stream:
            stream.write("split\tpath\tsize\tmtime_ns\n")
            stream.writelines(_file_lines(scan))
        os.replace(name, folder / FILES_FILE)
        handle, name = tempfile.mkstemp(dir=folder, suffix=".json.part")
        with os.fdopen(handle, "w") as stream:
            json.dump(manifest, stream)
        os.replace(name, folder / MANIFEST_FILE)
        return True
    except OSError as error:
        log.warning("cannot write the image cache %s (%s); the next run decodes again", folder, error)
        return False
