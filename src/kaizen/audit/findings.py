"""What the audit finds, from out-of-fold probabilities, features and pixels.

Each finding is an `Issue` about one example (split, index in that split, its label, a suggested label where
there is one, a score: higher is worse) and, for duplicates and leaks, the example it duplicates.

- `label`: cleanlab's confident learning (`cleanlab.filter.find_label_issues`) on the out-of-fold
  probabilities; score 1 - cleanlab's label quality (self-confidence), the suggestion the most likely class.
- `duplicate` / `leak`: the same decoded pixels (a content hash), or a near copy: a cosine similarity of the
  mean-centred pixels (images larger than MAX_SIDE block-averaged down) of at least NEAR_PIXEL at the best of
  the nine alignments within one pixel. Within the training split the later example of a pair is flagged
  (dropping it keeps the other); a training example that copies a test example is a leak. The fold models'
  penultimate features do not tell copies apart: they gather each class so tightly that a clean digit's
  nearest other digit is closer (median cosine 0.98 on digits) than a copy shifted by one pixel (0.90).
- `outlier`: far from every other training example in the fold models' feature space: the log of the mean
  cosine distance to its OUTLIER_NEIGHBOURS nearest neighbours more than OUTLIER_MADS robust deviations above
  the median.
- `high_loss`: the TOP_OVERALL highest out-of-fold losses, and the TOP_PER_CLASS highest of each class.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from kaizen.errors import KaizenError

KINDS = ("label", "duplicate", "leak", "outlier", "high_loss")
# Thresholds from benchmarks/audit_planted.py: the aligned pixel cosine of a clean training example to its
# nearest test example is at most 0.989 on digits and 0.982 on mnist-10k, that of a copy shifted by a pixel
# 1.000; 50 mnist-10k test images saved as JPEG (quality 90) scored at least 0.9995 against their originals.
NEAR_PIXEL = 0.995
MAX_SIDE = 32
OUTLIER_NEIGHBOURS = 5
# 6 robust deviations of the log distance flag none of the 1,538 clean digits nor the 8,100 mnist-10k training
# examples of benchmarks/audit_planted.py (on the plain distance, 80 of the 1,538 digits); not yet measured
# against planted outliers.
OUTLIER_MADS = 6.0
TOP_OVERALL = 24
TOP_PER_CLASS = 3
_CHUNK = 1024


@dataclass(frozen=True)
class Issue:
    """One finding about one example; `partner` (split, index) is the example a duplicate or leak copies."""

    split: str
    index: int
    label: int
    issue: str
    score: float
    suggested: int | None = None
    partner: tuple[str, int] | None = None


def label_issues(labels: np.ndarray, probs: np.ndarray) -> list[Issue]:
    """Confident learning's label issues (cleanlab), worst first."""
    filters, rank = _cleanlab()
    flagged = filters.find_label_issues(
        labels,
        probs,
        return_indices_ranked_by="self_confidence",
        n_jobs=1,  # in this process: no pool to start
    )
    quality = rank.get_label_quality_scores(labels, probs, method="self_confidence")
    suggested = probs.argmax(axis=1)
    return [
        Issue("train", int(i), int(labels[i]), "label", float(1 - quality[i]), int(suggested[i]))
        for i in flagged
    ]


def _cleanlab():
    try:
        from cleanlab import filter as filters
        from cleanlab import rank
    except ImportError:
        raise KaizenError(
            'kaizen audit needs cleanlab: pip install "kaizen[audit]" (or pip install cleanlab)'
        ) from None
    return filters, rank


def content_hashes(x: np.ndarray) -> list[bytes]:
    """A hash of each image's decoded pixels (equal images, equal hashes)."""
    return [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest() for image in x]


def knn_cosine(features: np.ndarray) -> np.ndarray:
    """Each row's mean cosine to its OUTLIER_NEIGHBOURS nearest other rows (unit feature vectors)."""
    n = len(features)
    k = min(OUTLIER_NEIGHBOURS, n - 1)
    result = np.zeros(n, dtype=np.float32)
    if k < 1:
        return result
    for start in range(0, n, _CHUNK):
        similar = features[start : start + _CHUNK] @ features.T
        rows = np.arange(similar.shape[0])
        similar[rows, rows + start] = -np.inf  # not itself
        result[start : start + len(rows)] = -np.partition(-similar, k - 1, axis=1)[:, :k].mean(axis=1)
    return result


def nearest_copy(x: np.ndarray, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each image of `x`: the index of the most similar image of `others` (None: of `x` itself, never the
    image itself) and their cosine of mean-centred pixels at the best alignment within one pixel."""
    same = others is None
    targets = x if same else others
    best = np.full(len(x), -np.inf, dtype=np.float32)
    index = np.zeros(len(x), dtype=np.int64)
    if len(targets) == 0 or (same and len(x) < 2):
        return index, best
    rows_unit = _centred_units(_small(x))
    small_targets = _small(targets)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = _centred_units(_shift(small_targets, dy, dx))
            for start in range(0, len(x), _CHUNK):
                similar = rows_unit[start : start + _CHUNK] @ moved.T
                rows = np.arange(similar.shape[0])
                if same:
                    similar[rows, rows + start] = -np.inf
                top = similar.argmax(axis=1)
                value = similar[rows, top]
                better = value > best[start : start + len(rows)]
                best[start : start + len(rows)][better] = value[better]
                index[start : start + len(rows)][better] = top[better]
    return index, best


def _small(x: np.ndarray) -> np.ndarray:
    """Images block-averaged so that neither side exceeds MAX_SIDE (float32)."""
    x = x.astype(np.float32, copy=False)
    factor = -(-max(x.shape[-2:]) // MAX_SIDE)
    if factor == 1:
        return x
    n, c, height, width = x.shape
    height, width = height // factor * factor, width // factor * factor
    blocks = x[:, :, :height, :width].reshape(n, c, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(3, 5))


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images moved dy rows and dx columns, the uncovered edge filled with zeros."""
    out = np.zeros_like(x)
    height, width = x.shape[-2:]
    out[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = x[
        ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def _centred_units(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def copies(x_train: np.ndarray, x_test: np.ndarray, labels: np.ndarray) -> list[Issue]:
    """Duplicates inside the training split and leaks of test examples into it (exact, or near copies)."""
    train_hash, test_hash = content_hashes(x_train), content_hashes(x_test)
    issues: list[Issue] = []
    first_of: dict[bytes, int] = {}
    for i, digest in enumerate(train_hash):
        if digest in first_of:
            issues.append(
                Issue("train", i, int(labels[i]), "duplicate", 1.0, partner=("train", first_of[digest]))
            )
        else:
            first_of[digest] = i
    exact = {issue.index for issue in issues}
    twin, similarity = nearest_copy(x_train)
    for i in np.flatnonzero(similarity >= NEAR_PIXEL):
        j = int(twin[i])
        if i in exact or (j > i and similarity[j] >= NEAR_PIXEL and twin[j] == i):
            continue  # a pair is flagged once, on its later example
        issues.append(
            Issue("train", int(i), int(labels[i]), "duplicate", float(similarity[i]), partner=("train", j))
        )
    in_test = {digest: j for j, digest in enumerate(test_hash)}
    source, similarity = nearest_copy(x_train, x_test)
    for i, digest in enumerate(train_hash):
        if digest in in_test:
            issues.append(Issue("train", i, int(labels[i]), "leak", 1.0, partner=("test", in_test[digest])))
        elif similarity[i] >= NEAR_PIXEL:
            issues.append(
                Issue(
                    "train", i, int(labels[i]), "leak", float(similarity[i]), partner=("test", int(source[i]))
                )
            )
    return issues


def outliers(labels: np.ndarray, knn: np.ndarray) -> list[Issue]:
    """Training examples far from all others: robust z of the log mean cosine distance to their neighbours."""
    distance = np.log(np.maximum(1 - knn.astype(np.float64), 1e-9))
    median = np.median(distance)
    spread = 1.4826 * np.median(np.abs(distance - median))
    if spread <= 0:
        return []
    z = (distance - median) / spread
    return [
        Issue("train", int(i), int(labels[i]), "outlier", float(z[i]))
        for i in np.flatnonzero(z > OUTLIER_MADS)
    ]


def high_losses(labels: np.ndarray, loss: np.ndarray, probs: np.ndarray) -> list[Issue]:
    """The highest out-of-fold losses: TOP_OVERALL overall and TOP_PER_CLASS of each class."""
    order = np.argsort(-loss, kind="stable")
    chosen = list(order[:TOP_OVERALL])
    for label in np.unique(labels):
        chosen += [i for i in order if labels[i] == label][:TOP_PER_CLASS]
    suggested = probs.argmax(axis=1)
    picked = sorted(set(int(i) for i in chosen), key=lambda i: -loss[i])
    return [Issue("train", i, int(labels[i]), "high_loss", float(loss[i]), int(suggested[i])) for i in picked]


def class_balance(labels: np.ndarray, num_classes: int) -> dict[str, float | list[int]]:
    """Examples per class and the ratio of the largest class to the smallest."""
    counts = np.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    if not len(present):
        raise KaizenError("the training split is empty")
    return {"counts": counts.tolist(), "imbalance": float(present.max() / present.min())}
