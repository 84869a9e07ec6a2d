"""Kaggle digit-recogniser CSV: a header `label,pixel0,...,pixelN` (label optional), one image per row.

numpy's C parser reads the common, well-formed file in a couple of seconds (42,000 x 785); only when it
fails does a slower row-by-row pass run, to name the exact line and column that is wrong.
"""

from __future__ import annotations

import csv
import gzip
import math
import warnings
from pathlib import Path
from typing import TextIO

import numpy as np

from kaizen.errors import KaizenError

LABEL = "label"


def read_pixel_csv(path: str | Path, require_label: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (images N x 1 x S x S, labels int64 or None when the file has no label column).

    Pixels are uint8 when every value is a whole number in 0..255 (and some exceed 1), else float32 as read.
    """
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"file not found: {path}")
    try:
        with _open_text(path) as stream:
            names = _read_header(stream, path)
            label_col = names.index(LABEL) if LABEL in names else None
            if label_col is None and require_label:
                shown = ",".join(names[:3]) + (",..." if len(names) > 3 else "")
                raise KaizenError(
                    f"{path}: no '{LABEL}' column in the header (found {shown}); "
                    f"expected {LABEL},pixel0,...,pixelN"
                )
            side = _image_side(len(names) - (label_col is not None), path)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a header-only file is reported below, as an error
                    values = np.loadtxt(stream, delimiter=",", dtype=np.float32, ndmin=2, comments=None)
            except ValueError:
                values = None
    except UnicodeDecodeError:
        raise KaizenError(f"{path}: not a UTF-8 text file") from None
    except (OSError, EOFError) as error:
        raise KaizenError(f"{path}: cannot read ({error})") from None
    if values is None or values.shape[1] != len(names):
        values = _read_slowly(path, names)
    if len(values) == 0:
        raise KaizenError(f"{path}: no data rows after the header")
    _check_finite(values, names, path)
    labels = None
    if label_col is not None:
        labels = _labels(values[:, label_col], path)
        values = np.delete(values, label_col, axis=1)
    return _pixels(values).reshape(len(values), 1, side, side), labels


def _open_text(path: Path) -> TextIO:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_header(stream: TextIO, path: Path) -> list[str]:
    line = stream.readline()
    if not line.strip():
        raise KaizenError(f"{path}: empty first line; expected a header {LABEL},pixel0,...,pixelN")
    names = [name.strip().lower() for name in next(csv.reader([line]))]
    if all(_is_number(name) for name in names):
        raise KaizenError(
            f"{path}: line 1 is data, not a header; expected a header {LABEL},pixel0,...,pixelN"
        )
    return names


def _image_side(pixels: int, path: Path) -> int:
    side = math.isqrt(pixels)
    if pixels == 0 or side * side != pixels:
        raise KaizenError(f"{path}: {pixels} pixel columns do not form a square image (e.g. 784 = 28 x 28)")
    return side


def _read_slowly(path: Path, names: list[str]) -> np.ndarray:
    """Parse row by row; raise a KaizenError naming the first bad line and column."""
    rows = []
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        next(reader)
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(names):
                raise KaizenError(
                    f"{path}: line {line} has {len(row)} columns, expected {len(names)} as in the header"
                )
            for column, cell in enumerate(row):
                if not _is_number(cell):
                    raise KaizenError(
                        f"{path}: line {line}, column {column + 1} ({names[column]}): "
                        f"'{cell}' is not a number"
                    )
            rows.append([float(cell) for cell in row])
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(names))


def _check_finite(values: np.ndarray, names: list[str], path: Path) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = bad[0]
        raise KaizenError(
            f"{path}: line {_line_of(path, row)}, column {column + 1} ({names[column]}): "
            f"{values[row, column]} is not a finite number"
        )


def _labels(column: np.ndarray, path: Path) -> np.ndarray:
    bad = np.flatnonzero((column < 0) | (column != np.round(column)))
    if len(bad):
        raise KaizenError(
            f"{path}: line {_line_of(path, bad[0])}: label {column[bad[0]]:g} is not a class index "
            "(a whole number >= 0)"
        )
    return column.astype(np.int64)


def _line_of(path: Path, data_row: int) -> int:
    """Return the file line of the `data_row`-th (0-based) non-blank data row, for error messages."""
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        next(reader)
        seen = -1
        for row in reader:
            seen += bool(row)
            if seen == data_row:
                return reader.line_num
    return data_row + 2


def _pixels(values: np.ndarray) -> np.ndarray:
    whole = (values == np.round(values)).all()
    if whole and values.min() >= 0 and 1 < values.max() <= 255:
        return values.astype(np.uint8)
    return np.ascontiguousarray(values)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
