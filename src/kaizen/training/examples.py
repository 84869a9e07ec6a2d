"""Which training examples a run sees, and how much each one counts: the data side of the ensembles.

Stacking trains on all folds but one (`train.folds`, `train.fold`), boosting weights each example's loss
(`train.sample_weights`), bagging trains on a bootstrap resample (`train.bootstrap`). All three are functions
of the config alone, so a member of an ensemble is an ordinary run that can be resumed and reproduced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kaizen.config import TrainConfig
from kaizen.data import Data
from kaizen.errors import KaizenError

_BOOTSTRAP_STREAM = 3  # a stream of train.seed of its own, so the resample does not mirror the shuffling


def fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Return each example's fold (0..folds-1): per class, a seeded permutation dealt out in turn.

    Every fold gets (nearly) the same class balance; the same labels, folds and seed give the same folds.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # continue the deal where the previous class stopped, so small classes do not all start at fold 0
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """Return `n` indices drawn from range(n) with replacement (a bootstrap resample), seeded."""
    return np.random.default_rng((seed, _BOOTSTRAP_STREAM)).integers(0, n, size=n)


def read_sample_weights(path: str | Path, count: int) -> np.ndarray:
    """Return the weights in `path` (a .npy vector of `count` finite non-negative values, not all 0)."""
    path = Path(path)
    if not path.is_file():
        raise KaizenError(f"train.sample_weights: file not found: {path}")
    try:
        weights = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise KaizenError(f"train.sample_weights: {path} is not a readable .npy array ({error})") from None
    if weights.ndim != 1 or len(weights) != count or not np.issubdtype(weights.dtype, np.number):
        raise KaizenError(
            f"train.sample_weights: {path} holds {weights.shape} values; expected a vector of {count} weights, "
            "one per training example"
        )
    weights = weights.astype(np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise KaizenError(f"train.sample_weights: {path} must hold finite weights >= 0, not all 0")
    return weights


def select_examples(data: Data, cfg: TrainConfig, split_seed: int) -> tuple[Data, torch.Tensor | None]:
    """Return the training data the run trains on, and per-example loss weights (None: all count the same).

    Order of operations: drop the held-out fold, attach the sample weights (given for the examples that
    remain, in their order), then resample with replacement. Weights are scaled to mean 1, so the loss and
    the learning rate keep the scale of an unweighted run.
    """
    if cfg.folds is None and cfg.sample_weights is None and not cfg.bootstrap:
        return data, None
    keep = np.arange(len(data.y_train))
    if cfg.folds is not None:
        folds = fold_assignment(data.y_train.cpu().numpy(), cfg.folds, split_seed)
        keep = keep[folds != cfg.fold]
    weights = None if cfg.sample_weights is None else read_sample_weights(cfg.sample_weights, len(keep))
    if cfg.bootstrap:
        drawn = bootstrap_indices(len(keep), cfg.seed)
        keep = keep[drawn]
        weights = None if weights is None else weights[drawn]
    index = torch.from_numpy(keep).to(data.y_train.device)
    data = data.take_train(index)
    if weights is None:
        return data, None
    if weights.sum() <= 0:
        raise KaizenError("train.sample_weights: the bootstrap resample drew only examples of weight 0")
    weights = weights / weights.mean()
    return data, torch.as_tensor(weights, dtype=torch.float32, device=data.y_train.device)
