"""Image folders (`data.name: folder`): the user's own photographs, any size and mode, as one uint8 array.

Layouts under `data.path`: `train/<class>/…` with `test/<class>/…` (and optionally `val/<class>/…`), or directly
`<class>/…` (the test split is then held out, stratified and seeded). `data.test_path` names a separate test
folder of `<class>/…`. Class names are the folder names, sorted; files are found recursively; hidden files and
folders are ignored; other files are skipped and counted. Pillow decodes PNG, JPEG, BMP, GIF (first frame), WebP
and TIFF, applies the EXIF orientation, converts to `data.channels` and resizes to `data.image_size` with
`data.resize`. Decoded arrays are cached (see `kaizen.data.imagecache`), so a second run does not decode again.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kaizen.errors import KaizenError

if TYPE_CHECKING:  # config imports this module (through the registry) while it is being built
    from kaizen.config import DataConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
AUTO_SIZE_CAP = 64  # data.image_size auto: the median size, its longer side at most this
SPLITS = ("train", "val", "test")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Below this many files, decoding in this process beats starting worker processes (benchmarks/decode_pool.py,
# 64x64 PNGs on 2 cores: the pool takes 1.1-1.35x the inline time at 512 files, 0.67-0.74x at 1,024).
POOL_MIN_FILES = 512


@dataclass
class FolderScan:
    """The image files of a folder data set, before decoding: per split, the files and their class indices."""

    source: str
    class_names: list[str]
    files: dict[str, list[str]]  # train, val, test (val and test may be empty)
    labels: dict[str, np.ndarray]
    held_out: bool  # no test folder: the test split is held out of train by data.test_split
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # files that are not images, with reasons
    roots: list[Path] = field(default_factory=list)  # the folders scanned, for the cache's key

    def all_files(self) -> list[str]:
        """Return every image file in split order (train, val, test)."""
        return [path for split in SPLITS for path in self.files[split]]


@dataclass
class Decoded:
    """One file after decoding: pixels (C x H x W uint8) or the reason it was skipped."""

    pixels: np.ndarray | None
    original: tuple[int, int] | None  # (height, width) as stored, after EXIF rotation
    colour: bool
    problem: str | None
    bomb: bool = False


# ------------------------------------------------------------------------------------------ scanning


def scan_folder(cfg: DataConfig) -> FolderScan:
    """Return the files and classes of the image folder `cfg.path` (and `cfg.test_path`); no pixel is read."""
    if cfg.path is None:
        raise KaizenError(
            "data.name = folder needs data.path, a folder of <class>/ folders (or train/ test/)"
        )
    root = Path(cfg.path)
    if not root.is_dir():
        raise KaizenError(f"data.path {root}: not a folder")
    subfolders = {path.name for path in _visible(root) if path.is_dir()}
    split_layout = "train" in subfolders
    folders: dict[str, Path | None] = {"train": root, "val": None, "test": None}
    if split_layout:
        folders = {split: (root / split if split in subfolders else None) for split in SPLITS}
    if cfg.test_path is not None:
        if folders["test"] is not None:
            raise KaizenError(f"data.test_path {cfg.test_path} given, but {root} has its own test/ folder")
        folders["test"] = Path(cfg.test_path)
        if not folders["test"].is_dir():
            raise KaizenError(f"data.test_path {cfg.test_path}: not a folder")
    skipped: list[tuple[Path, str]] = []
    by_split = {
        split: _class_files(folder, skipped) if folder is not None else {}
        for split, folder in folders.items()
    }
    train_classes = sorted(by_split["train"])
    if not train_classes:
        raise KaizenError(
            f"{folders['train']}: no class folders with images (expected <class>/<image> files)"
        )
    if len(train_classes) < 2:
        raise KaizenError(
            f"{folders['train']}: only one class ({train_classes[0]}); a classifier needs at least two"
        )
    for split in ("val", "test"):
        unknown = sorted(set(by_split[split]) - set(train_classes))
        if unknown:
            raise KaizenError(
                f"{folders[split]}: class {unknown[0]!r} is not among the training classes "
                f"({', '.join(train_classes)})"
            )
    index = {name: number for number, name in enumerate(train_classes)}
    files, labels = {}, {}
    for split in SPLITS:
        pairs = [(path, index[name]) for name in sorted(by_split[split]) for path in by_split[split][name]]
        files[split] = [path for path, _ in pairs]
        labels[split] = np.array([label for _, label in pairs], dtype=np.int64)
    held_out = folders["test"] is None
    described = ", ".join(
        f"{len(files[split]):,} {split} in {folders[split]}" for split in SPLITS if files[split]
    )
    return FolderScan(
        source=f"image folder ({described})",
        class_names=train_classes,
        files=files,
        labels=labels,
        held_out=held_out,
        skipped=skipped,
        roots=[folder.resolve() for folder in folders.values() if folder is not None],
    )


def _visible(folder: Path) -> list[os.DirEntry]:
    """Return the entries of `folder` not hidden, sorted by name (scandir: no stat call for plain files)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                (entry for entry in entries if not entry.name.startswith(".")), key=lambda e: e.name
            )
    except OSError as error:
        raise KaizenError(f"{folder}: cannot list the folder ({error.strerror or error})") from None


def _class_files(folder: Path, skipped: list[tuple[Path, str]]) -> dict[str, list[str]]:
    """Return {class name: image files} of `folder`'s class sub-folders; a class with no image is an error."""
    classes = {}
    for entry in _visible(folder):
        class_dir = Path(entry.path)
        if not entry.is_dir():
            if not class_dir.exists():
                skipped.append((class_dir, "broken link"))
            continue  # loose files beside the class folders belong to no class
        images = _walk_images(class_dir, skipped)
        if not images:
            raise KaizenError(
                f"{class_dir}: class folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        classes[entry.name] = images
    return classes


def _walk_images(top: Path, skipped: list[tuple[Path, str]]) -> list[str]:
    """Return the image files under `top`, recursively and sorted; other files go to `skipped` with a reason.

    Linked folders are followed once: a link back to a folder being walked is a loop, and an error. The files
    are plain strings: a Path object per file took 4x the memory (8 MiB for 20,000 files, against 2 MiB).
    """
    images: list[str] = []
    ancestors: list[tuple[int, int]] = []

    def walk(folder: Path) -> None:
        identity = _identity(folder)
        if identity in ancestors:
            raise KaizenError(f"{folder}: symbolic link loop (it leads back to a folder that contains it)")
        ancestors.append(identity)
        for entry in _visible(folder):
            if entry.is_dir():
                walk(Path(entry.path))
                continue
            suffix = os.path.splitext(entry.name)[1]
            if not entry.is_file():  # a broken link, a link to itself, a device or a pipe
                reason = "broken link" if entry.is_symlink() else "not a regular file"
                skipped.append((Path(entry.path), reason))
            elif suffix.lower() in IMAGE_SUFFIXES:
                images.append(entry.path)
            else:
                skipped.append((Path(entry.path), f"not an image ({suffix or 'no extension'})"))
        ancestors.pop()

    walk(top)
    return images


def _identity(folder: Path) -> tuple[int, int]:
    try:
        stat = folder.stat()
    except OSError as error:
        raise KaizenError(f"{folder}: cannot read the folder ({error.strerror or error})") from None
    return stat.st_dev, stat.st_ino


# ------------------------------------------------------------------------------------------ decoding


def decode_image(
    path: str | Path,
    size: tuple[int, int] | None,
    channels: int,
    resize: str,
    max_pixels: int | None,
) -> Decoded:
    """Decode one image: EXIF orientation applied, `channels` (1 or 3), resized to `size` (H, W) by `resize`.

    With `size` None only the header is read (original size and whether the mode has colour). Never raises for
    a bad file: the problem is returned, and `bomb` marks an image over Pillow's decompression-bomb limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels  # set here too: a worker process does not inherit the parent's value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                colour = image.mode not in _GRAY_MODES
                width, height = image.size
                if size is None:
                    exif = image.getexif()
                    orientation = exif.get(ImageOps.ExifTags.Base.Orientation)
                    if orientation in (2, 3, 4, 5, 6, 7, 8):
                        exif.tobytes()  # what exif_transpose writes back: a malformed tag fails here, not later
                    if orientation in (5, 6, 7, 8):
                        width, height = height, width
                    return Decoded(None, (height, width), colour, None)
                image.seek(0)  # GIF, TIFF: the first frame
                oriented = ImageOps.exif_transpose(image)
                original = (oriented.height, oriented.width)
                pixels = _resize(_convert(oriented, channels), size, resize)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return Decoded(None, None, False, f"{error} (Pillow's limit PIL.Image.MAX_IMAGE_PIXELS)", bomb=True)
    except UnidentifiedImageError:
        return Decoded(None, None, False, "not a readable image (corrupt or unknown format)")
    except PermissionError as error:
        return Decoded(None, None, False, f"unreadable ({error.strerror})")
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # truncated data, broken headers
        return Decoded(None, None, False, f"corrupt ({error})")
    except struct.error as error:  # an EXIF tag whose value does not fit its type, met by exif_transpose
        return Decoded(None, None, False, f"corrupt EXIF metadata ({error})")
    array = np.asarray(pixels, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return Decoded(np.ascontiguousarray(array), original, colour, None)


def _convert(image: Image.Image, channels: int) -> Image.Image:
    """Return `image` as L or RGB; transparent pixels are laid on white, as a viewer shows them."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit and float grayscale
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def _resize(image: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    height, width = size
    if image.size == (width, height):
        return image
    method = Image.Resampling.BILINEAR
    if resize == "crop":  # scale so the image covers the target, then cut the centre
        return ImageOps.fit(image, (width, height), method)
    if resize == "pad":  # scale so the image fits inside the target, then pad with black
        return ImageOps.pad(image, (width, height), method, color=0)
    return image.resize((width, height), method)


def _decode_task(task: tuple[str, tuple[int, int] | None, int, str, int | None]) -> Decoded:
    return decode_image(*task)


def decode_many(
    paths: Sequence[str | Path],
    size: tuple[int, int] | None,
    channels: int,
    resize: str,
    what: str = "decoding images",
) -> list[Decoded]:
    """Decode `paths` (see `decode_image`) in order, in a process pool when there are many, with a progress bar."""
    return list(iter_decoded(paths, size, channels, resize, what))


def iter_decoded(
    paths: Sequence[str | Path],
    size: tuple[int, int] | None,
    channels: int,
    resize: str,
    what: str = "decoding images",
) -> Iterator[Decoded]:
    """Yield `decode_many`'s results one at a time, in order, as they are ready (the pool stops when closed)."""
    tasks = [(str(path), size, channels, resize, Image.MAX_IMAGE_PIXELS) for path in paths]
    workers = min(os.cpu_count() or 1, 8)
    if len(tasks) < POOL_MIN_FILES or workers < 2:
        yield from _progress(map(_decode_task, tasks), len(tasks), what)
        return
    chunk = max(1, len(tasks) // (workers * 16))
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        yield from _progress(pool.map(_decode_task, tasks, chunksize=chunk), len(tasks), what)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _progress(results: Iterable[Decoded], total: int, what: str) -> Iterable[Decoded]:
    if total < POOL_MIN_FILES:
        return results
    from rich.console import Console
    from rich.progress import track

    return track(results, description=what, total=total, console=Console(stderr=True), transient=True)


def read_image_inputs(
    inputs: Sequence[str | Path], shape: Sequence[int], resize: str
) -> tuple[np.ndarray, list[str]]:
    """Return (images N x C x H x W uint8, their files) of image files and folders (recursive), for prediction.

    Each image is decoded as for training (`shape` = C, H, W; `resize`); one that cannot be decoded is skipped
    with a warning naming it.
    """
    files: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += _walk_images(item, skipped)
        elif not item.is_file():
            raise KaizenError(f"input not found: {item}")
        elif item.suffix.lower() in IMAGE_SUFFIXES:
            files.append(str(item))
        else:
            raise KaizenError(
                f"{item}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) among image inputs"
            )
    channels, height, width = (int(side) for side in shape)
    decoded = decode_many(files, (height, width), channels, resize)
    for path, item in zip(files, decoded):
        if item.bomb:
            raise KaizenError(f"{path}: {item.problem}")
        if item.problem is not None:
            log.warning("skipped %s: %s", path, item.problem)
    kept = [(str(path), item.pixels) for path, item in zip(files, decoded) if item.pixels is not None]
    if not kept:
        raise KaizenError(f"no decodable image in {', '.join(str(item) for item in inputs)}")
    return np.stack([pixels for _, pixels in kept]), [path for path, _ in kept]


def is_image_input(path: str | Path) -> bool:
    """Return whether `path` is a folder or has an image file's extension."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES


# ------------------------------------------------------------------------------------- image settings


def resolve_settings(cfg: DataConfig, scan: FolderScan) -> tuple[int, tuple[int, int], list[Decoded]]:
    """Return (channels, (H, W), headers of the training files) for `data.channels` and `data.image_size`.

    The headers are read only when a setting is auto; otherwise the list is empty.
    """
    headers: list[Decoded] = []
    if cfg.channels == "auto" or cfg.image_size == "auto":
        headers = decode_many(scan.files["train"], None, 1, cfg.resize, "reading image headers")
        for path, header in zip(scan.files["train"], headers):
            if header.bomb:
                raise KaizenError(f"{path}: {header.problem}")
    readable = [header for header in headers if header.problem is None]
    if cfg.channels == "auto":
        channels = 3 if any(header.colour for header in readable) else 1
    else:
        channels = int(cfg.channels)
    if cfg.image_size == "auto":
        if not readable:
            raise KaizenError(f"{scan.source}: no readable training image to take the size from")
        sizes = np.array([header.original for header in readable], dtype=np.float64)
        height, width = np.median(sizes, axis=0)
        scale = min(1.0, AUTO_SIZE_CAP / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    elif isinstance(cfg.image_size, int):
        size = (cfg.image_size, cfg.image_size)
    else:
        size = tuple(int(side) for side in cfg.image_size)
    return channels, size, headers


def describe_settings(channels: int, size: tuple[int, int], resize: str) -> str:
    """Return e.g. '3 x 32 x 32 (crop)'."""
    return f"{channels} x {size[0]} x {size[1]} ({resize})"
