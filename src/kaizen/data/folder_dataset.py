"""The `folder` dataset: images in <class>/ folders (or train/ test/ [val/]) under data.path, scanned and
decoded by kaizen.data.folder, kept by kaizen.data.imagecache, assembled here into the stored record.

Scanning and decoding know nothing of caching; the cache knows the scan; this module alone joins them, so the
imports run one way: folder <- imagecache <- folder_dataset.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kaizen import registry
from kaizen.data import _FRACTION_STREAM, _VAL_STREAM
from kaizen.data.folder import SPLITS, decode_many, describe_settings, resolve_settings, scan_folder
from kaizen.data.imagecache import cache_dir, cache_state, load_or_decode, strict_error
from kaizen.data.raw import RawData
from kaizen.data.report import DataReport
from kaizen.data.selection import check_classes, kept_examples
from kaizen.data.splits import stratified_split, stratified_subset
from kaizen.errors import KaizenError, plural

if TYPE_CHECKING:
    from kaizen.config import DataConfig

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- build


def folder_shape(cfg: DataConfig) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and the number of classes of an image folder, from its file headers: nothing is decoded."""
    scan = scan_folder(cfg)
    channels, size, _ = resolve_settings(cfg, scan)
    return (channels, *size), len(scan.class_names)


_warned: set[str] = set()
MARK_DAYS = 1  # a command's "warned already" marks are removed after this long
COMMAND_ENV = "KAIZEN_COMMAND"  # one id per kaizen command (kaizen/__init__ sets it), inherited by its workers


def warn_once(lines: list[str]) -> None:
    """Log a data set's skipped-file warnings once: once in this process, and once among the processes of one
    command (a compare's workers inherit its `COMMAND_ENV`), not once per run or per worker."""
    key = "\n".join(lines)
    if not lines or key in _warned:
        return
    _warned.add(key)
    if not _first_in_command(key):
        return
    for line in lines:
        log.warning("%s", line)


def _first_in_command(key: str) -> bool:
    """True for the first process of this kaizen command to ask about `key` (True where that cannot be known).

    A command is named by `COMMAND_ENV`, which the first kaizen process sets and the worker processes it starts
    inherit; the next command (even in the same shell script) gets a new name, so it is told again."""
    import hashlib
    import tempfile

    command = os.environ.get(COMMAND_ENV)
    if not command:
        return True
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    marks = Path(tempfile.gettempdir()) / f"kaizen-warned-{os.getuid()}"
    try:
        marks.mkdir(mode=0o700, exist_ok=True)
        (marks / f"{command}-{digest}").touch(exist_ok=False)
    except FileExistsError:
        return False
    except OSError:
        return True
    for mark in marks.iterdir():  # the marks of commands that ended long ago
        with contextlib.suppress(OSError):
            if time.time() - mark.stat().st_mtime > MARK_DAYS * 86400:
                mark.unlink()
    return True


def describe_folder(cfg: DataConfig) -> DataReport:
    """`kaizen data`'s report of an image folder from its files' headers (and the cache's record of which
    files decode, when it has one): nothing is decoded."""
    scan = scan_folder(cfg)
    channels, size, _ = resolve_settings(cfg, scan)
    state, manifest = cache_state(cfg, scan)
    headers = decode_many(scan.all_files(), None, 1, cfg.resize, "reading image headers")
    for path, header in zip(scan.all_files(), headers):
        if header.bomb:
            raise KaizenError(f"{path}: {header.problem}")
    readable = [header.original for header in headers if header.problem is None]
    if manifest is not None:  # the cache knows which files decode
        kept = {split: np.asarray(manifest["kept"][split], dtype=np.int64) for split in SPLITS}
        problems = list(manifest["problems"].items())
    else:  # the files whose headers cannot be read will not decode either
        readable_file = np.array([header.problem is None for header in headers], dtype=bool)
        bounds = np.cumsum([0] + [len(scan.files[split]) for split in SPLITS])
        kept = {
            split: np.flatnonzero(readable_file[bounds[i] : bounds[i + 1]]) for i, split in enumerate(SPLITS)
        }
        problems = [
            (str(path), h.problem) for path, h in zip(scan.all_files(), headers) if h.problem is not None
        ]
    if cfg.strict and problems:
        raise strict_error(*problems[0])
    skipped = [(str(path), reason) for path, reason in scan.skipped] + problems
    labels = {split: scan.labels[split][kept[split]] for split in SPLITS}
    train, test = labels["train"], labels["test"]
    files = [scan.files["train"][i] for i in kept["train"]]
    if scan.held_out:
        rest, held = stratified_split(train, cfg.test_split, cfg.split_seed, what="data.test_split")
        train, test, files = train[rest], train[held], [files[i] for i in rest]
    val = labels["val"]
    chosen = kept_examples(cfg, len(train) + len(val), files + [scan.files["val"][i] for i in kept["val"]])
    train_rows = np.arange(len(train))
    if not len(val):  # no val/ folder: split off as load_data does
        train_rows, val_rows = stratified_split(
            train, cfg.val_split, (cfg.split_seed, _VAL_STREAM), "data.val_split"
        )
        val = train[val_rows]
    if chosen is not None:  # data.exclude / data.keep (over training then val/ examples, as load_data
        # counts) select what trains; the validation split keeps its examples, as in load_data
        train_rows = np.intersect1d(train_rows, chosen)
    train = train[train_rows]
    classes = len(scan.class_names)
    check_classes(  # as load_data does, before data.fraction: what a run would be told
        scan.class_names,
        {
            name: np.bincount(y, minlength=classes)
            for name, y in (("train", train), ("val", val), ("test", test))
        },
    )
    if cfg.fraction < 1:
        train = train[stratified_subset(train, cfg.fraction, (cfg.split_seed, _FRACTION_STREAM))]
    counts = {
        name: np.bincount(split, minlength=classes)
        for name, split in (("train", train), ("val", val), ("test", test))
    }
    sizes = np.array(readable) if readable else None
    return DataReport(
        source=scan.source,
        class_names=scan.class_names,
        counts=counts,
        input_shape=(channels, *size),
        original_sizes=None
        if sizes is None
        else (tuple(sizes.min(0).tolist()), tuple(sizes.max(0).tolist())),
        resize=cfg.resize,
        cache=f"{cache_dir(cfg, scan)} ({state})",
        skipped=skipped,
        pending=manifest is None,
    )


def folder_examples(cfg: DataConfig, per_class: int) -> tuple[list[np.ndarray], list[str], str]:
    """The first `per_class` decodable training images of each class in [0, 1], the class names and a title:
    only those files are decoded (see kaizen.data.report.class_examples)."""
    scan = scan_folder(cfg)
    channels, size, _ = resolve_settings(cfg, scan)
    examples = []
    for label in range(len(scan.class_names)):
        files = [path for path, y in zip(scan.files["train"], scan.labels["train"]) if y == label]
        decoded = decode_many(files[: per_class * 2], size, channels, cfg.resize)
        pixels = [item.pixels for item in decoded if item.pixels is not None][:per_class]
        examples.append(np.stack(pixels).astype(np.float32) / 255 if pixels else np.empty((0, channels, *size)))
    return examples, scan.class_names, f"{cfg.path} · {describe_settings(channels, size, cfg.resize)}"


@registry.DATASETS.register(
    "folder", shape=folder_shape, describe=describe_folder, examples=folder_examples
)
def folder_dataset(cfg: DataConfig) -> RawData:
    """Images in <class>/ folders under data.path (or train/ test/ [val/]), decoded with Pillow and cached."""
    scan = scan_folder(cfg)
    decoded = load_or_decode(cfg, scan)
    lines = [f"skipped {path}: {reason}" for path, reason in decoded.problems.items()]
    if scan.skipped:
        what = "is not an image" if len(scan.skipped) == 1 else "are not images"
        lines.insert(0, f"{cfg.path}: skipped {plural(len(scan.skipped), 'file')} that {what} (kaizen data lists them)")
    warn_once(lines)
    # every split is rows of the one (memory-mapped) images array: nothing is copied here
    offsets = np.cumsum([0] + [len(decoded.kept[split]) for split in SPLITS])
    rows = {split: np.arange(offsets[i], offsets[i + 1]) for i, split in enumerate(SPLITS)}
    y = {split: scan.labels[split][decoded.kept[split]] for split in SPLITS}
    paths = {split: [scan.files[split][i] for i in decoded.kept[split]] for split in SPLITS}
    for split in SPLITS:
        if scan.files[split] and not len(y[split]):
            raise KaizenError(f"{cfg.path}: no {split} image could be decoded")
    train_rows, train_y, train_paths = rows["train"], y["train"], paths["train"]
    setting = describe_settings(decoded.images.shape[1], decoded.images.shape[2:], cfg.resize)
    source = f"{scan.source}; {setting}{decoded.note}"
    if scan.held_out:
        rest, test = stratified_split(train_y, cfg.test_split, cfg.split_seed, what="data.test_split")
        test_rows, test_y, test_paths = train_rows[test], train_y[test], [train_paths[i] for i in test]
        train_rows, train_y, train_paths = train_rows[rest], train_y[rest], [train_paths[i] for i in rest]
        source += f"; {len(test):,} held out for test (split seed {cfg.split_seed})"
    else:
        test_rows, test_y, test_paths = rows["test"], y["test"], paths["test"]
    val_rows = None
    if len(y["val"]):  # a val/ folder: its images are the validation split
        val_rows = np.arange(len(train_y), len(train_y) + len(y["val"]))
        train_rows = np.concatenate([train_rows, rows["val"]])
        train_y = np.concatenate([train_y, y["val"]])
        train_paths = train_paths + paths["val"]
    return RawData(
        decoded.images,
        train_y,
        decoded.images,
        test_y,
        scan.class_names,
        source,
        train_paths=train_paths,
        test_paths=test_paths,
        val_rows=val_rows,
        train_rows=train_rows,
        test_rows=test_rows,
    )
