"""Byte sizes as people write them ("2GB", "512MiB") and read them ("1.5 MiB"): plain functions any layer may
use (the config validates data.max_memory with them)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_bytes(value: int | str) -> int:
    """Return a byte count from an int or a string like "2GB", "512MiB", "1.5g" (raises ValueError)."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"expected a positive number of bytes, got {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"expected bytes or a size like 2GB or 512MiB, got {value!r}")
    number, unit, binary = match.groups()
    scale = (1024 if binary else 1000) ** " kmgt".index(unit.lower() or " ")
    size = int(float(number) * scale)
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def describe_bytes(size: int) -> str:
    """Return a byte count for people: "300 bytes", "1.5 MiB", "2.0 GiB"."""
    if size < 1024:
        return f"{size} bytes"
    for power, unit in enumerate(("KiB", "MiB", "GiB"), start=1):
        if size < 1024 ** (power + 1):
            return f"{size / 1024**power:.1f} {unit}"
    return f"{size / 1024**4:,.1f} TiB"
