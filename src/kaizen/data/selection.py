"""Train on a cleaned index: `data.exclude` (an audit's issues.csv) or `data.keep` (an audit's keep.txt).

`data.exclude` names examples by their index in the training split as loaded (the row of the training file, or
the position in a folder's sorted file list), before the validation split, with the file at that index; it
drops the training rows whose issue is one a fix removes (FIXABLE: wrong labels, duplicates, train/test
leaks); the other kinds (outliers, high-loss examples) are there to be looked at. Both select what trains:
the validation split is drawn first and keeps its flagged examples, so a cleaned and an uncleaned run are
scored on the same validation examples.

keep.txt (KEEP_HEADER first) names each example to keep by its file, relative to data.path, for data read
from files (an image folder), or as `row N` for array formats; a file renamed, moved or deleted since is an
error naming it, as a file that is not at its index is for data.exclude. An older keep.txt of bare row
numbers is read for array formats (a row is all that names their examples) and refused for files, where a
renamed file would shift every row after it.

A file made for other data fails with one line: an audit.json beside it that counted another number of
training examples, an index out of range, a file that is not (or no longer) among the training files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kaizen.errors import KaizenError, printable

if TYPE_CHECKING:
    from kaizen.config import DataConfig
    from kaizen.data.raw import RawData

log = logging.getLogger(__name__)

FIXABLE = ("label", "duplicate", "leak")
AUDIT_FILE = "audit.json"
KEEP_HEADER = "# kaizen keep.txt 2: the training examples to keep, one a line"
ROW_PREFIX = "row "


def select_training(raw: RawData, cfg: DataConfig, train: np.ndarray) -> tuple[np.ndarray, str]:
    """The rows of `train` (indices into the training pool, the validation split already drawn) that
    `cfg.exclude` / `cfg.keep` leave, and a note saying so (`train` and "" when neither is set).

    The validation split is drawn before the selection and keeps every example, flagged or not: a run trained
    on a cleaned index is scored on the same validation examples as one trained on all, so the two compare
    (cleaning the validation split as well would raise its accuracy without any better model).
    """
    keep = kept_examples(cfg, len(raw.train_y), raw.train_paths)
    if keep is None:
        return train, ""
    key, path = ("data.exclude", cfg.exclude) if cfg.exclude is not None else ("data.keep", cfg.keep)
    chosen = np.intersect1d(train, keep)
    return chosen, f"; {key} {path}: training on {len(chosen):,} of {len(train):,} examples"


def kept_examples(cfg: DataConfig, count: int, paths: list[str] | None) -> np.ndarray | None:
    """Return the training examples (of `count`, with their files `paths`) that data.exclude / data.keep
    leave, sorted; None when neither is set. A file that does not match the data fails with one line."""
    if cfg.exclude is None and cfg.keep is None:
        return None
    key, path = (
        ("data.exclude", Path(cfg.exclude)) if cfg.exclude is not None else ("data.keep", Path(cfg.keep))
    )
    if not path.is_file():
        raise KaizenError(f"{key}: file not found: {path}")
    _check_audited_count(key, path, count)
    if cfg.exclude is not None:
        keep = np.setdiff1d(np.arange(count), _read_exclude(key, path, count, paths))
    else:
        keep = _read_keep(key, path, count, paths, cfg.path)
    if len(keep) == 0:
        raise KaizenError(f"{key}: {path} leaves no training example")
    return keep


def _check_audited_count(key: str, path: Path, count: int) -> None:
    """The audit that wrote `path` (its audit.json beside it, if any) must have seen `count` training examples."""
    audit = path.parent / AUDIT_FILE
    if not audit.is_file():
        return
    try:
        audited = json.loads(audit.read_text())["data"]["train_examples"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a kaizen audit's file: the indices are checked one by one below
    if audited != count:
        raise KaizenError(
            f"{key}: {path} was made by an audit of {audited:,} training examples, but this data has "
            f"{count:,}; audit this data (kaizen audit) or point {key} at its own file"
        )


def _read_exclude(key: str, path: Path, count: int, paths: list[str] | None) -> np.ndarray:
    try:
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            missing = {"split", "index"} - set(reader.fieldnames or [])
            if missing:
                raise KaizenError(
                    f"{key}: {path} has no column {sorted(missing)[0]!r}; expected an audit's issues.csv "
                    "(split,index,path,label,suggested,issue,score)"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise KaizenError(f"{key}: cannot read {path} as CSV ({error})") from None
    dropped = []
    for line, row in enumerate(rows, start=2):
        if row["split"] != "train" or row.get("issue", "label") not in FIXABLE:
            continue
        index = _index(key, path, f"line {line}", row["index"], count)
        where = (row.get("path") or "").strip()
        if where:
            if paths is None:
                raise KaizenError(f"{key}: {path} line {line} names file {where}, but this data has no files")
            if printable(paths[index]) != where:  # issues.csv holds names as written: not-UTF-8 bytes as \xNN
                raise KaizenError(
                    f"{key}: {path} line {line}: {where} is not training example {index} of this data "
                    f"({paths[index]}); the file belongs to other data"
                )
        dropped.append(index)
    return np.array(sorted(set(dropped)), dtype=np.int64)


def keep_name(path: str | None, row: int, root: str | Path | None) -> str:
    """keep.txt's name of one training example: its file relative to the data folder, or `row N`."""
    if path is None:
        return f"{ROW_PREFIX}{row}"
    return Path(os.path.relpath(path, root)).as_posix() if root is not None else Path(path).as_posix()


def keep_text(kept: list[int], paths: list[str] | None, root: str | Path | None) -> str:
    """keep.txt's text: KEEP_HEADER, then each kept example's `keep_name`."""
    names = [keep_name(None if paths is None else paths[index], index, root) for index in kept]
    where = f"files relative to {root}" if paths is not None else "rows of the training split"
    return f"{KEEP_HEADER} ({where})\n" + "".join(f"{name}\n" for name in names)


def _read_keep(
    key: str, path: Path, count: int, paths: list[str] | None, root: str | Path | None
) -> np.ndarray:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KaizenError(f"{key}: cannot read {path} ({error})") from None
    named = [(number, text.strip()) for number, text in enumerate(lines, start=1) if text.strip()]
    if not (lines and lines[0].startswith(KEEP_HEADER)):  # an older keep.txt: bare row numbers
        if paths is not None:
            raise KaizenError(
                f"{key}: {path} lists row numbers only (an older kaizen's keep.txt), which cannot tell a "
                "renamed or replaced file; write it again with kaizen audit --fix (a new keep.txt names "
                "each file)"
            )
        keep = [_index(key, path, f"line {number}", text, count) for number, text in named]
    else:
        index_of = {keep_name(file, row, root): row for row, file in enumerate(paths or [])}
        keep = []
        for number, text in named:
            if text.startswith("#"):
                continue
            if paths is None:
                if not text.startswith(ROW_PREFIX):
                    raise KaizenError(
                        f"{key}: {path} line {number} names file {text}, but this data has rows, not files"
                    )
                keep.append(_index(key, path, f"line {number}", text[len(ROW_PREFIX) :], count))
            elif text not in index_of:
                raise KaizenError(
                    f"{key}: {path} line {number}: {text} is not a training file of this data (renamed, moved "
                    "or deleted since the audit?); audit this data again (kaizen audit --fix)"
                )
            else:
                keep.append(index_of[text])
    if len(set(keep)) != len(keep):
        seen: set[int] = set()
        repeated = next(index for index in keep if index in seen or seen.add(index))
        name = keep_name(None if paths is None else paths[repeated], repeated, root)
        raise KaizenError(f"{key}: {path} lists {name} twice")
    return np.array(sorted(keep), dtype=np.int64)


def _index(key: str, path: Path, where: str, text: str, count: int) -> int:
    try:
        index = int(text.strip())
    except ValueError:
        raise KaizenError(f"{key}: {path} {where}: {text.strip()!r} is not an example index") from None
    if not 0 <= index < count:
        raise KaizenError(
            f"{key}: {path} {where}: index {index} is out of range 0..{count - 1} (this data has {count:,} "
            "training examples)"
        )
    return index


def check_classes(class_names: list[str], counts: dict[str, np.ndarray]) -> None:
    """A class with no training example, given per-split class counts (train, val, test) as a run sees them.

    One that validation or test expects (it has examples there) cannot be learned, yet it is scored: a
    KaizenError naming it. One with no example anywhere (all its files undecodable, or left out by data.keep)
    only leaves an output the model never learns: a warning.
    """
    for number, name in enumerate(class_names):
        if counts["train"][number]:
            continue
        expected = {split: int(counts[split][number]) for split in ("val", "test") if counts[split][number]}
        if expected:
            where = ", ".join(f"{count:,} in {split}" for split, count in expected.items())
            raise KaizenError(
                f"class '{name}' has no training example ({where}): a model cannot learn it; give it training "
                "images (or move some of its test images to training)"
            )
        log.warning(
            "class '%s' has no example (in training, validation or test): the model has an output it never "
            "learns",
            name,
        )
