"""The audit's K fold models and what they say about each example: out-of-fold probabilities and features.

The fold models are a study (`kaizen.study.compare`): variant `fold<k>` trains with `train.folds=K`,
`train.fold=k-1` on the whole training split (no validation split, no subset, no data.exclude / data.keep, so
example i of the fold runs is example i of the training file). They run in parallel workers and a finished
fold is reused when the same audit runs again. Every training example then gets the class probabilities of
the one model that did not train on it, and every example (train and test) the penultimate-layer features of
every fold model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kaizen.config import Config
from kaizen.data import Data, load_data
from kaizen.errors import KaizenError
from kaizen.run import load_run
from kaizen.study.compare import Event, Outcome, Variant, make_plan, run_path, run_plan
from kaizen.training.examples import fold_assignment

# What the fold runs change in the user's config: every training example is in exactly one fold, and the runs
# skip the pictures and statistics an audit does not read.
AUDIT_OVERRIDES = [
    "data.val_split=0",
    "data.fraction=1",
    "data.exclude=null",
    "data.keep=null",
    "log.plots=false",
    "log.stats=false",
    "log.tensorboard=false",
    "log.histograms=false",
]


@dataclass
class FoldOutputs:
    """Per-example outputs of the fold models: `probs` N_train×C out-of-fold, `loss` their cross-entropy on
    the given label, `train_features` unit vectors (their dot product is the cosine similarity averaged over
    the fold models), `folds` each training example's fold."""

    data: Data
    folds: np.ndarray
    probs: np.ndarray
    loss: np.ndarray
    train_features: np.ndarray
    run_dirs: list[Path]


def audit_config(cfg: Config, budget: int | None) -> Config:
    """The config every fold model trains with: `cfg` with AUDIT_OVERRIDES (and train.epochs = `budget`)."""
    if budget is not None and budget < 1:
        raise KaizenError(f"--budget must be at least 1 epoch, not {budget}")
    return cfg.override(AUDIT_OVERRIDES + ([f"train.epochs={budget}"] if budget is not None else []))


def check_folds(folds: int, labels: np.ndarray, class_names: list[str]) -> None:
    """KaizenError unless `folds` >= 2, the data has two classes and every class has `folds` examples."""
    if folds < 2:
        raise KaizenError(
            f"--folds must be at least 2 (each example is predicted by a model that did not see it), not {folds}"
        )
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = class_names[present[0]] if len(present) else "none"
        raise KaizenError(f"the training data has one class ({only}): there are no labels to audit")
    smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    if counts[smallest] < folds:
        raise KaizenError(
            f"--folds {folds} is more than the {counts[smallest]} training example(s) of class "
            f"'{class_names[smallest]}'; use --folds {max(2, int(counts[smallest]))} or fewer"
        )


def train_folds(
    cfg: Config,
    folds: int,
    out_dir: Path,
    workers: int | None,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Train (or reuse) the `folds` fold models of `cfg` (already an audit_config) under `out_dir/runs`."""
    variants = [Variant(f"fold{k + 1}", (f"train.folds={folds}", f"train.fold={k}")) for k in range(folds)]
    plan = make_plan(
        cfg,
        variants,
        1,
        kind="audit",
        title="audit",
        question="Which training examples are mislabelled, duplicated, leaked or strange?",
        description=f"{cfg.run_name()}: {folds} fold models for out-of-fold predictions",
        extra={"folds": folds},
    )
    outcome = run_plan(plan, out_dir, workers, on_event, on_start)
    if outcome.failed:
        first = outcome.failed[0]
        raise KaizenError(
            f"{len(outcome.failed)} of {folds} fold models failed ({first.variant}: {first.error}); the "
            f"finished ones are kept, run the same command again to retry"
        )
    return outcome


def fold_outputs(cfg: Config, folds: int, out_dir: Path) -> FoldOutputs:
    """Read the finished fold models under `out_dir` and compute FoldOutputs on the CPU."""
    data = load_data(cfg.data, "cpu")
    labels = data.y_train.numpy()
    assignment = fold_assignment(labels, folds, cfg.data.split_seed)
    probs = np.zeros((len(labels), data.num_classes), dtype=np.float64)
    train_parts, run_dirs = [], []
    for k in range(folds):
        path = run_path(out_dir, f"fold{k + 1}", cfg.train.seed)
        model, _ = load_run(path).model()
        train_logits, train_features = _forward(model, data.x_train, cfg.train.eval_batch_size)
        held_out = assignment == k
        probs[held_out] = torch.softmax(train_logits[torch.from_numpy(held_out)].double(), dim=1).numpy()
        train_parts.append(_unit(train_features))
        run_dirs.append(path)
    # concatenated unit vectors scaled by 1/sqrt(K): their dot product is the mean cosine over the K models
    scale = 1 / np.sqrt(folds)
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))
    return FoldOutputs(
        data=data,
        folds=assignment,
        probs=probs,
        loss=loss,
        train_features=np.concatenate(train_parts, axis=1) * scale,
        run_dirs=run_dirs,
    )


def _classifier(model: nn.Module) -> nn.Module:
    """The model's last Linear layer (`head` in kaizen's builder): its input is the penultimate layer."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise KaizenError("the audit needs a model that ends in a dense (Linear) classifier")
    return linears[-1]


def _forward(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """(logits, penultimate features) of `model` on `x`, in batches, in eval mode."""
    captured: list[torch.Tensor] = []
    hook = _classifier(model).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].detach().float().flatten(1))
    )
    try:
        with torch.inference_mode():
            logits = [model(x[start : start + batch_size]).float() for start in range(0, len(x), batch_size)]
    finally:
        hook.remove()
    width = _classifier(model).in_features
    features = torch.cat(captured).numpy() if captured else np.zeros((0, width), dtype=np.float32)
    return (torch.cat(logits) if logits else torch.zeros(0, 1)), features


def _unit(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)
