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

Each issue kind is a finding kind of scope "data" (`kaizen.doctor.findings`): one class here with its code,
its report title and caption, its thresholds (with their source) and `run(context)` on an `AuditContext`,
returning its Issues. `KINDS` is their codes in registration order, the order of issues.csv and report.html;
adding a kind is one class in this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kaizen.doctor.findings import Kind, Threshold, finding_kind, kinds
from kaizen.doctor.measures import ClassBalance, exact_copies
from kaizen.doctor.measures import class_balance as count_classes
from kaizen.errors import KaizenError

NEAR_PIXEL = Threshold(
    "NEAR_PIXEL",
    0.995,
    "benchmarks/audit_planted.py: the aligned pixel cosine of a clean training example to its nearest test "
    "example is at most 0.989 on digits and 0.982 on mnist-10k, that of a copy shifted by a pixel 1.000; 50 "
    "mnist-10k test images saved as JPEG (quality 90) scored at least 0.9995 against their originals",
)
MAX_SIDE = 32
OUTLIER_NEIGHBOURS = 5
OUTLIER_MADS = Threshold(
    "OUTLIER_MADS",
    6.0,
    "benchmarks/audit_planted.py: 6 robust deviations of the log distance flag none of the 1,538 clean digits "
    "nor the 8,100 mnist-10k training examples (on the plain distance, 80 of the 1,538 digits); not yet "
    "measured against planted outliers",
)
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


@dataclass
class AuditContext:
    """What the audit's kinds read: the training labels, their out-of-fold probabilities, losses and features
    (from the fold models), and the decoded training and test pixels."""

    labels: np.ndarray
    probs: np.ndarray
    loss: np.ndarray
    train_features: np.ndarray
    x_train: np.ndarray
    x_test: np.ndarray


def find_issues(context: AuditContext) -> list[Issue]:
    """Every registered kind's issues, kind by kind in registration order."""
    return [issue for kind in kinds("data") for issue in kind().run(context)]


@finding_kind
class LabelIssues(Kind):
    """Confident learning's label issues (cleanlab), worst first."""

    scope = "data"
    code = "label"
    title = "Label issues"
    caption = "given → suggested label · score 1 − label quality"

    def run(self, context: AuditContext) -> list[Issue]:
        return label_issues(context.labels, context.probs)


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


@finding_kind
class Duplicates(Kind):
    """Copies inside the training split (exact, or near): the later example of a pair is flagged."""

    scope = "data"
    code = "duplicate"
    title = "Duplicates in the training split"
    caption = "pairs: the flagged training example beside the one it copies · score cosine (1: exact)"
    thresholds = (NEAR_PIXEL,)

    def run(self, context: AuditContext) -> list[Issue]:
        x, labels = context.x_train, context.labels
        issues: list[Issue] = []
        earlier = exact_copies(x, x)  # the first image with the same pixels: itself unless a copy
        for i, first in enumerate(earlier):
            if first != i:
                issues.append(Issue("train", i, int(labels[i]), "duplicate", 1.0, partner=("train", first)))
        exact = {issue.index for issue in issues}
        twin, similarity = nearest_copy(x)
        for i in np.flatnonzero(similarity >= NEAR_PIXEL):
            j = int(twin[i])
            if i in exact or (j > i and similarity[j] >= NEAR_PIXEL and twin[j] == i):
                continue  # a pair is flagged once, on its later example
            issues.append(
                Issue(
                    "train", int(i), int(labels[i]), "duplicate", float(similarity[i]), partner=("train", j)
                )
            )
        return issues


@finding_kind
class Leaks(Kind):
    """Training examples that copy a test example (exact, or near): the test score then measures memory."""

    scope = "data"
    code = "leak"
    title = "Leaks: test examples copied into training"
    caption = "pairs: the training example beside the test example it copies · score cosine (1: exact)"
    thresholds = (NEAR_PIXEL,)

    def run(self, context: AuditContext) -> list[Issue]:
        x, labels = context.x_train, context.labels
        in_test = exact_copies(x, context.x_test)
        source, similarity = nearest_copy(x, context.x_test)
        issues = []
        for i, j in enumerate(in_test):
            if j is not None:
                issues.append(Issue("train", i, int(labels[i]), "leak", 1.0, partner=("test", j)))
            elif similarity[i] >= NEAR_PIXEL:
                issues.append(
                    Issue(
                        "train",
                        i,
                        int(labels[i]),
                        "leak",
                        float(similarity[i]),
                        partner=("test", int(source[i])),
                    )
                )
        return issues


@finding_kind
class Outliers(Kind):
    """Training examples far from all others in the fold models' feature space."""

    scope = "data"
    code = "outlier"
    title = "Outliers"
    caption = "far from every other training example in feature space · score robust z of the distance"
    thresholds = (OUTLIER_MADS,)

    def run(self, context: AuditContext) -> list[Issue]:
        return outliers(context.labels, knn_cosine(context.train_features))


@finding_kind
class HighLosses(Kind):
    """The highest out-of-fold losses, overall and per class."""

    scope = "data"
    code = "high_loss"
    title = "Highest losses"
    caption = "highest out-of-fold losses (overall and per class) · given → predicted · score loss"

    def run(self, context: AuditContext) -> list[Issue]:
        return high_losses(context.labels, context.loss, context.probs)


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
    """Examples per class and the ratio of the largest class to the smallest (`measures.class_balance`)."""
    balance: ClassBalance = count_classes(labels, num_classes)
    if not any(balance.counts):
        raise KaizenError("the training split is empty")
    return {"counts": balance.counts, "imbalance": float(balance.imbalance)}


KINDS = tuple(kind.code for kind in kinds("data"))
