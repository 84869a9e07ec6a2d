"""The decoded-image cache of a folder data set: one uint8 `images-<token>.npy` named by a `manifest.json`.

The manifest holds what the pixels depend on: kaizen's version, the cache format, the image settings
(data.channels, data.image_size, data.resize) and a digest of every file's path, size, modification and
change times and inode (the list itself is written beside it, `files.tsv`, for people: checking a manifest
that held it took 15 MiB of memory at its peak for 20,000 files). The change time and the inode catch a file
rewritten with its old size and modification time (`cp -p`, `rsync -t`, `touch -r`), at no extra cost. A
cache is used only when all of them match the folder as it is now; otherwise it is decoded again and
rewritten, and the reason is logged.

One cache per data folder *and* image settings (the key is the folders' resolved paths with the settings),
under `data.cache` or the user's cache directory: runs of one folder with other settings (`kaizen compare
--vary data.resize=crop,stretch`) each keep their own cache and never rebuild each other's.

Commits are atomic and never change a file a reader may hold: the pixels go to a new file with a unique name,
which is flushed to disk before the manifest naming it (with its shape and a CRC-32 of its pixels) replaces
the old manifest. A reader maps the file its manifest names and checks its shape and checksum: a file
replaced, truncated or damaged is decoded again (with a warning), never trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kaizen.data.folder import SPLITS, FolderScan, iter_decoded, resolve_settings
from kaizen.errors import KaizenError
from kaizen.version import __version__

if TYPE_CHECKING:
    from kaizen.config import DataConfig

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
MANIFEST_FILE, FILES_FILE = "manifest.json", "files.tsv"
_IMAGES_NAME = re.compile(r"images-[0-9a-f]{16}\.npy")  # what a manifest may name: a file in its folder
_CHECKSUM_CHUNK = 1 << 24  # bytes hashed at a time: a memory-mapped cache is never read whole into memory
_ABANDONED_SECONDS = 3600  # a partial images file untouched this long belongs to no live process
_OPEN_TRIES = 3  # a manifest replaced between reading it and opening its file: read the new one


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
    """Return the cache folder of this data set: one per set of data folders and image settings."""
    root = Path(cfg.cache) if cfg.cache else user_cache_dir() / "folders"
    key = "\n".join([*(str(path) for path in scan.roots), json.dumps(_settings(cfg), sort_keys=True)])
    return root / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _settings(cfg: DataConfig) -> dict[str, Any]:
    size = cfg.image_size if isinstance(cfg.image_size, str | int) else list(cfg.image_size)
    return {"channels": cfg.channels, "image_size": size, "resize": cfg.resize}


FILES_HEADER = "split\tpath\tsize\tmtime_ns\tctime_ns\tinode\n"


def _file_lines(scan: FolderScan) -> Iterator[str]:
    """Yield "split path size mtime_ns ctime_ns inode" (tab-separated) of every image file (-1s when it cannot
    be stat'ed). Writing a file changes its ctime, and `cp -p` or a rename over it its inode, whatever its
    mtime says."""
    for split in SPLITS:
        for path in scan.files[split]:
            try:
                stat = os.stat(path)
                facts = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            except OSError:
                facts = (-1, -1, -1, -1)
            yield f"{split}\t{path}\t" + "\t".join(map(str, facts)) + "\n"


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
    if manifest.get("format") != CACHE_FORMAT or manifest.get("kaizen") != __version__:
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
    images = None
    for _ in range(_OPEN_TRIES):  # another process may replace the manifest between reading it and the file
        state, manifest = cache_state(cfg, scan, digest)
        if manifest is None:
            break
        images, state = _open_images(folder, manifest)
        if images is not None or state != "its images file is gone":
            break
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


def _open_images(folder: Path, manifest: dict[str, Any]) -> tuple[np.ndarray | None, str]:
    """Return (the cache's images memory-mapped, its first `rows`; "up to date"), or (None, why not) when the
    file the manifest names is gone, unreadable, or not the shape and checksum the manifest says."""
    name, rows = manifest.get("images"), manifest.get("rows")
    if not isinstance(name, str) or not _IMAGES_NAME.fullmatch(name) or not isinstance(rows, int):
        return None, "unreadable manifest"
    try:
        images = np.load(folder / name, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None, "its images file is gone"
    except (OSError, ValueError):
        return None, f"{name} is unreadable"
    if (
        list(images.shape) != manifest.get("shape")
        or images.dtype != np.uint8
        or not 0 <= rows <= len(images)
    ):
        return None, f"{name} is not the shape its manifest says"
    images = images[:rows]
    if pixels_checksum(images) != manifest.get("crc32"):
        return None, f"{name} is damaged (its pixels do not match the manifest's checksum)"
    return images, "up to date"


def pixels_checksum(images: np.ndarray) -> int:
    """CRC-32 of the images' bytes, read a chunk at a time (a memory map is never read whole into memory)."""
    flat = images.reshape(-1)
    crc = 0
    for start in range(0, len(flat), _CHECKSUM_CHUNK):
        crc = zlib.crc32(memoryview(np.ascontiguousarray(flat[start : start + _CHECKSUM_CHUNK])), crc)
    return crc


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
            "kaizen": __version__,
            **described,
            "shape": list(shape),
            "rows": rows.count,
            "kept": {split: kept[split].tolist() for split in SPLITS},
            "problems": problems,
        }
        images = rows.finish(scan, manifest)
    note = f"; decoded {len(images):,} images in {time.perf_counter() - start:.1f} s"
    return FolderImages(images, kept, problems, note)


def _write_all(handle: int, data: bytes | memoryview) -> None:
    """Write all of `data` to the file descriptor, unbuffered: what returns has reached the file (an OSError,
    a full disk say, leaves nothing pending that a later close would try to write again)."""
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view) :]


class _Rows:
    """Where decoded images go, in order: a new images file in the cache (.npy, written as they come, so they
    sit in the page cache, not in this process) or, when it cannot be written, an array in memory."""

    def __init__(self, folder: Path, shape: tuple[int, ...]) -> None:
        self.folder, self.shape, self.count, self.header = folder, shape, 0, 0
        self.memory: np.ndarray | None = None
        self.temp: Path | None = None
        self.handle = -1
        self.crc = 0
        self.name = f"images-{secrets.token_hex(8)}.npy"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.handle, name = tempfile.mkstemp(dir=folder, prefix=f".{self.name}.", suffix=".part")
            self.temp = Path(name)
            header = _npy_header(shape)
            _write_all(self.handle, header)
            self.header = len(header)
        except OSError as error:
            self._to_memory(error)

    def add(self, pixels: np.ndarray) -> None:
        data = pixels.tobytes()
        if self.memory is None:
            try:
                _write_all(self.handle, data)
            except OSError as error:
                self._to_memory(error)
        if self.memory is not None:
            self.memory[self.count] = pixels
        self.crc = zlib.crc32(data, self.crc)
        self.count += 1

    def _to_memory(self, error: OSError) -> None:
        """Carry on in memory: the rows written so far are read back, the file goes."""
        log.warning(
            "cannot write the image cache %s (%s); decoding into memory, the next run decodes again",
            self.folder,
            error,
        )
        self.memory = np.empty(self.shape, dtype=np.uint8)
        self._close()
        if self.temp is not None:
            if self.count:
                size = self.count * int(np.prod(self.shape[1:]))
                written = np.fromfile(self.temp, np.uint8, size, offset=self.header)
                self.memory[: self.count] = written.reshape(self.count, *self.shape[1:])
            self._discard()

    def _close(self) -> None:
        if self.handle >= 0:
            with contextlib.suppress(OSError):
                os.close(self.handle)
            self.handle = -1

    def finish(self, scan: FolderScan, manifest: dict[str, Any]) -> np.ndarray:
        """Return the images: memory-mapped from the cache, once it and its manifest are written."""
        if self.memory is None:
            try:
                os.ftruncate(self.handle, self.header + int(np.prod(self.shape)))  # the unused rows (sparse)
                os.fsync(self.handle)  # on disk before any manifest vouches for it
            except OSError as error:
                self._to_memory(error)
        if self.memory is not None:
            return self.memory[: self.count]
        self._close()
        # mapped before it is committed: another process's commit may remove it from the folder, never from
        # this map
        images = np.load(self.temp, mmap_mode="r", allow_pickle=False)[: self.count]
        manifest = {**manifest, "images": self.name, "crc32": self.crc}
        if _commit(self.folder, self.temp, self.name, scan, manifest):
            self.temp = None
        else:
            images = np.array(images)  # no manifest vouches for the file: read it whole, the file goes
            self._discard()
        return images

    def _discard(self) -> None:
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink(missing_ok=True)
            self.temp = None

    def __enter__(self) -> _Rows:
        return self

    def __exit__(self, *exc: object) -> None:  # an error (or Ctrl-C) while decoding: no half-written file
        self._close()
        self._discard()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header of a C-ordered uint8 array of `shape`."""
    import io

    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return stream.getvalue()


def _write_file(folder: Path, name: str, data: bytes) -> None:
    """Write `folder/name` atomically and durably (a temporary file, fsync, rename); the temporary file is
    removed whatever fails."""
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        try:
            _write_all(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _commit(folder: Path, temp: Path, name: str, scan: FolderScan, manifest: dict[str, Any]) -> bool:
    """Move the decoded images into place under their own name, write files.tsv, then the manifest that
    vouches for them (each atomically), then remove the images files no manifest names any more; warn and
    return False on error (leaving no temporary file behind)."""
    try:
        os.replace(temp, folder / name)
        lines = FILES_HEADER + "".join(_file_lines(scan))
        _write_file(folder, FILES_FILE, lines.encode("utf-8", "surrogateescape"))
        _write_file(folder, MANIFEST_FILE, json.dumps(manifest).encode())
    except OSError as error:
        with contextlib.suppress(OSError):
            (folder / name).unlink(missing_ok=True)
        log.warning("cannot write the image cache %s (%s); the next run decodes again", folder, error)
        return False
    for old in folder.glob("images*.npy"):  # earlier commits' files: a reader that mapped one keeps it
        if old.name != name:
            with contextlib.suppress(OSError):
                old.unlink()
    # partial files a killed process left (a live one writes to its file as it decodes)
    for part in folder.glob(".images-*.part"):
        with contextlib.suppress(OSError):
            if time.time() - part.stat().st_mtime > _ABANDONED_SECONDS:
                part.unlink()
    return True
