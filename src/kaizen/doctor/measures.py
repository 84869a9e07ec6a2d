"""Measurements of a data set shared by the pre-run checks and the audit: class balance and exact copies.

Each is computed here once, so `kaizen check` and `kaizen audit` cannot disagree about the same data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassBalance:
    """Examples per class. `ratio`: the rarest class's count over the commonest's (0 when a class is absent);
    `imbalance`: the commonest over the rarest class present (its inverse, over the classes that occur)."""

    counts: list[int]

    @property
    def ratio(self) -> float:
        return min(self.counts) / max(self.counts) if max(self.counts, default=0) else 0.0

    @property
    def imbalance(self) -> float:
        present = [count for count in self.counts if count]
        return max(present) / min(present) if present else float("inf")


def class_balance(labels: np.ndarray, num_classes: int) -> ClassBalance:
    """The examples per class of `labels` (integers below `num_classes`)."""
    return ClassBalance(np.bincount(np.asarray(labels), minlength=num_classes).tolist())


def content_hashes(x: np.ndarray) -> list[bytes]:
    """A hash of each image's pixels (equal images, equal hashes); `x` is any array-like of images."""
    return [
        hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
        for image in np.asarray(x)
    ]


def exact_copies(x: np.ndarray, others: np.ndarray) -> list[int | None]:
    """For each image of `x`, the index of the first image of `others` with the same pixels, or None."""
    first: dict[bytes, int] = {}
    for index, digest in enumerate(content_hashes(others)):
        first.setdefault(digest, index)
    return [first.get(digest) for digest in content_hashes(x)]
