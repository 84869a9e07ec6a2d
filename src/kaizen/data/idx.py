"""IDX files, the format of MNIST, Fashion-MNIST and KMNIST (gzipped or raw).

Layout: two zero bytes, a dtype byte (0x08 = unsigned byte), the number of dimensions, one big-endian
uint32 per dimension, then the values. Every way a file can be wrong becomes a one-line KaizenError.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from kaizen.errors import KaizenError

UNSIGNED_BYTE = 0x08
LABELS_NDIM = 1  # magic 0x00000801
IMAGES_NDIM = 3  # magic 0x00000803
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """Return the file's content, decompressed when it is gzipped (detected by content, not by name)."""
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KaizenError(f"{path}: cannot read ({error.strerror or error})") from None
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise KaizenError(f"{path}: corrupt or truncated gzip data ({error})") from None


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Return the array stored in an IDX file as uint8 with the file's shape.

    `ndim` = 1 expects a labels file (magic 0x0801), 3 an images file (0x0803); None accepts either.
    """
    path = Path(path)
    data = read_bytes(path)
    expected_magic = "0x0801 (labels) or 0x0803 (images)" if ndim is None else f"0x{0x0800 + ndim:04x}"
    if len(data) < 4:
        raise KaizenError(f"{path}: not an IDX file: {len(data)} bytes, too short for a header")
    zeros, dtype_byte, found_ndim = data[:2], data[2], data[3]
    allowed = (LABELS_NDIM, IMAGES_NDIM) if ndim is None else (ndim,)
    if zeros != b"\x00\x00" or found_ndim not in allowed:
        found = int.from_bytes(data[:4], "big")
        raise KaizenError(f"{path}: not an IDX file: expected magic {expected_magic}, found 0x{found:08x}")
    if dtype_byte != UNSIGNED_BYTE:
        raise KaizenError(
            f"{path}: IDX dtype byte 0x{dtype_byte:02x} is not supported, expected 0x08 (uint8)"
        )
    header_size = 4 + 4 * found_ndim
    if len(data) < header_size:
        raise KaizenError(f"{path}: truncated IDX header: expected {header_size} bytes, found {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(found_ndim))
    if any(size == 0 for size in shape[1:]):
        raise KaizenError(f"{path}: IDX dimensions {shape} contain a zero")
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise KaizenError(
            f"{path}: IDX file {problem}: shape {shape} needs {expected} bytes, found {len(data)}"
        )
    # copy: frombuffer views the immutable bytes, and callers (torch) expect a writable array
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array (1-D labels or 3-D images) as an IDX file; gzip when the name ends in .gz.

    Returns the path written.
    """
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
