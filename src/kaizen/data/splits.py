"""Seeded stratified splits of example indices: test hold-out, validation split, training subset.

Each class contributes in proportion to its size (largest remainder), so a split keeps the class balance;
when the split is large enough, every class is represented on both sides, so small fractions keep all classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaizen.errors import KaizenError


def resolve_count(size: float, total: int, what: str = "split") -> int:
    """Return how many of `total` examples `size` asks for: a fraction 0 < size < 1 or a whole count >= 1.

    A fraction picks at least one example and leaves at least one; 0 picks none.
    """
    if size < 0 or (size >= 1 and size != int(size)):
        raise KaizenError(f"{what} = {size}: expected a fraction in (0, 1) or a whole count >= 1")
    if size == 0:
        return 0
    if size < 1:
        return min(max(round(size * total), 1), total - 1) if total > 1 else 0
    if size >= total:
        raise KaizenError(f"{what} = {int(size)} examples, but only {total} are available")
    return int(size)


def stratified_split(
    labels: np.ndarray, size: float, seed: int | Sequence[int], what: str = "split"
) -> tuple[np.ndarray, np.ndarray]:
    """Return (rest, picked): sorted index arrays, `picked` holding `size` examples drawn per class.

    `size` is a fraction (0 < size < 1) or a count (>= 1); the same labels and seed give the same split.
    """
    labels = np.asarray(labels)
    wanted = resolve_count(size, len(labels), what)
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    counts = _allocate(np.array([len(m) for m in members]), wanted)
    try:
        rng = np.random.default_rng(seed)
    except (ValueError, TypeError):
        raise KaizenError(f"data.split_seed must be >= 0 ({what} got seed {seed})") from None
    rest, picked = [], []
    for indices, count in zip(members, counts, strict=True):
        shuffled = rng.permutation(indices)
        picked.append(shuffled[:count])
        rest.append(shuffled[count:])
    empty = np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(rest or [empty])), np.sort(np.concatenate(picked or [empty]))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int | Sequence[int]) -> np.ndarray:
    """Return the sorted indices of a stratified `fraction` (0 < fraction <= 1) of the examples."""
    if fraction >= 1:
        return np.arange(len(labels))
    return stratified_split(labels, fraction, seed, what="fraction")[1]


def _allocate(class_sizes: np.ndarray, wanted: int) -> np.ndarray:
    """Return per-class counts summing to `wanted`, proportional to class sizes (largest remainder).

    When there are enough examples, every class keeps at least one on each side of the split.
    """
    total = int(class_sizes.sum())
    if wanted == 0 or total == 0:
        return np.zeros(len(class_sizes), dtype=np.int64)
    exact = class_sizes * wanted / total
    n_classes = len(class_sizes)
    low = np.where(wanted >= n_classes, np.minimum(class_sizes, 1), 0)
    keep_one = (total - wanted >= n_classes) & (class_sizes >= 2)
    high = class_sizes - np.where(keep_one, 1, 0)
    counts = np.clip(np.floor(exact).astype(np.int64), low, high)
    # largest remainder: hand out (or take back) one example at a time where the shortfall is biggest
    while counts.sum() < wanted:
        gap = np.where(counts < high, exact - counts, -np.inf)
        counts[np.argmax(gap)] += 1
    while counts.sum() > wanted:
        excess = np.where(counts > low, counts - exact, -np.inf)
        counts[np.argmax(excess)] -= 1
    return counts
