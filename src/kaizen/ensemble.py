"""Ensembles (seed 001): combine finished runs, or train the members of an ensemble and combine them.

`ensemble_runs` evaluates existing runs on their common split, each alone and together (probability average
and majority vote). `train_ensemble` trains the members of one method as ordinary run directories under one
folder, then does the same and writes `ensemble.json`:

- `seeds`: K runs that differ only in train.seed; probability average.
- `bagging`: K runs on bootstrap resamples of the training split (train.bootstrap); probability average.
- `boosting`: SAMME, multi-class AdaBoost. Member m trains with example weights w (train.sample_weights);
  its weighted training error err gives it the say alpha = log((1 - err) / err) + log(K - 1) (K classes),
  and the examples it got wrong gain weight w *= exp(alpha). Prediction is the alpha-weighted vote.
- `stacking`: K-fold out-of-fold class probabilities of each base config (several -c) feed a logistic
  regression meta-classifier; on the test split it reads each base config's fold models, averaged.
- `snapshot`: one run with a cyclic cosine schedule of K cycles; the weights at the end of each cycle
  (checkpoints/snapshot-k.pt) are the members; probability average.

Every result shows the ensemble's accuracy beside its best member's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.registry import ENSEMBLES
from kaizen.run import Run, load_run
from kaizen.track import rundir

COMBINE = ("average", "vote")
# Data keys that leave a split's examples as they are (fraction subsets the training split only).
_SAME_SPLIT = {"test": {"download", "fraction", "val_split"}, "val": {"download", "fraction"}}

Progress = Callable[[str], None]


@dataclass
class Member:
    """One member of an ensemble and its score on the evaluated split."""

    name: str
    path: str
    acc: float
    loss: float
    weight: float | None = None  # boosting: the member's say (alpha)


@dataclass
class EnsembleResult:
    """Members' and ensemble's accuracy on one split. `combined` maps a combination rule to its accuracy;
    `rule` names the ensemble's own (average, vote, samme, stacking)."""

    method: str
    split: str
    count: int
    members: list[Member]
    combined: dict[str, float]
    rule: str
    notes: list[str] = field(default_factory=list)

    @property
    def best_member(self) -> Member:
        """The member with the highest accuracy."""
        return max(self.members, key=lambda member: member.acc)

    @property
    def accuracy(self) -> float:
        """The ensemble's accuracy (its own combination rule)."""
        return self.combined[self.rule]

    def headline(self) -> str:
        """One line: the ensemble's accuracy beside its best member's."""
        best = self.best_member
        gain = 100 * (self.accuracy - best.acc)
        return (
            f"{self.method} ensemble of {len(self.members)} ({self.rule}): {self.split} accuracy "
            f"{self.accuracy:.2%} vs best member {best.acc:.2%} ({best.name}) · {gain:+.2f} points"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ensemble.json."""
        best = self.best_member
        return {
            "method": self.method,
            "split": self.split,
            "n": self.count,
            "ensemble": {"rule": self.rule, "acc": round(self.accuracy, 6)},
            "best_member": {"name": best.name, "acc": round(best.acc, 6)},
            "gain": round(self.accuracy - best.acc, 6),
            "combined": {rule: round(acc, 6) for rule, acc in self.combined.items()},
            "members": [
                {
                    "name": member.name,
                    "path": member.path,
                    "acc": round(member.acc, 6),
                    "loss": round(member.loss, 6),
                    **({"weight": round(member.weight, 6)} if member.weight is not None else {}),
                }
                for member in self.members
            ],
            "notes": self.notes,
        }


def render_table(result: EnsembleResult) -> Table:
    """A rich table: one row per member, then one per combination rule (the ensemble's own in bold)."""
    table = Table(
        title=f"{result.method} ensemble · {result.split} ({result.count:,} images)", title_justify="left"
    )
    table.add_column("member")
    table.add_column("accuracy", justify="right")
    table.add_column("loss", justify="right")
    if any(member.weight is not None for member in result.members):
        table.add_column("weight", justify="right")
    best = result.best_member
    for index, member in enumerate(result.members):
        cells = [member.name, f"{member.acc:.2%}", f"{member.loss:.4f}"]
        if len(table.columns) == 4:
            cells.append("" if member.weight is None else f"{member.weight:.3f}")
        table.add_row(
            *cells, style="cyan" if member is best else None, end_section=index == len(result.members) - 1
        )
    for rule, acc in result.combined.items():
        cells = [f"ensemble ({rule})", f"{acc:.2%}", ""] + ([""] if len(table.columns) == 4 else [])
        table.add_row(*cells, style="bold" if rule == result.rule else None)
    return table


# ----------------------------------------------------------------------------------------- combining


def average(probs: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the members' class probabilities (N×K)."""
    return torch.stack(probs).mean(0)


def vote(probs: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
    """Predicted classes by (weighted) majority vote; ties go to the class of highest mean probability."""
    weights = weights or [1.0] * len(probs)
    scores = sum(
        weight * torch.nn.functional.one_hot(p.argmax(1), p.shape[1]) for weight, p in zip(weights, probs)
    )
    return (scores.double() + 1e-6 * average(probs).double()).argmax(
        1
    )  # float64: the nudge must not round away


def accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of predictions (class indices, or N×K probabilities) that match `y`."""
    if predicted.ndim == 2:
        predicted = predicted.argmax(1)
    return (predicted == y).float().mean().item()


def cross_entropy(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean -log p(true class), with p clamped at 1e-12."""
    return -probs.gather(1, y[:, None]).clamp_min(1e-12).log().mean().item()


class Evaluator:
    """Class probabilities of runs' models on one split of their (common) data, each run with its own
    input normalisation."""

    def __init__(self, cfg: Config, split: str = "test"):
        from kaizen.data import load_data

        data = load_data(cfg.data, "cpu")
        self.data = data
        self.split = split
        self.y = getattr(data, f"y_{split}")
        if len(self.y) == 0:
            raise KaizenError(f"the {split} split is empty; choose another with --split")
        self.pixels = self._pixels(getattr(data, f"x_{split}"))

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return x * torch.tensor(self.data.std).view(shape) + torch.tensor(self.data.mean).view(shape)

    def probs(self, run: Run, checkpoint: str | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities of `run`'s model (its `checkpoint`) on the split, or on `x` (normalised like the data)."""
        from kaizen.data import normalize
        from kaizen.evaluate import predict_proba

        model, state = run.model(checkpoint)
        pixels = self.pixels if x is None else self._pixels(x)
        inputs = normalize(pixels, state["mean"], state["std"])
        return predict_proba(model, inputs, run.config.train.eval_batch_size)

    def member(self, name: str, run: Run, probs: torch.Tensor, weight: float | None = None) -> Member:
        """A Member scored on the split."""
        return Member(name, str(run.path), accuracy(probs, self.y), cross_entropy(probs, self.y), weight)

    def result(
        self,
        method: str,
        members: list[Member],
        probs: list[torch.Tensor],
        rule: str = "average",
        extra: dict[str, float] | None = None,
        notes: list[str] | None = None,
    ) -> EnsembleResult:
        """The result of combining `probs` by average and vote (plus `extra` rules), `rule` the headline."""
        combined = {"average": accuracy(average(probs), self.y), "vote": accuracy(vote(probs), self.y)}
        combined.update(extra or {})
        return EnsembleResult(method, self.split, len(self.y), members, combined, rule, notes or [])


# ------------------------------------------------------------------------------------- existing runs


def check_compatible(runs: list[Run], states: list[dict[str, Any]], split: str) -> None:
    """Raise a KaizenError unless the runs share input shape, classes and the data of `split`."""
    first, first_state = runs[0], states[0]
    ignored = _SAME_SPLIT.get(split, {"download"})
    first_data = first.config.data.model_dump()
    for run, state in zip(runs[1:], states[1:]):
        for key in ("input_shape", "num_classes"):
            if state[key] != first_state[key]:
                raise KaizenError(
                    f"cannot ensemble {first.path.name} and {run.path.name}: {key} {first_state[key]} vs {state[key]}"
                )
        data = run.config.data.model_dump()
        for key, value in first_data.items():
            if key not in ignored and data[key] != value:
                raise KaizenError(
                    f"cannot ensemble {first.path.name} and {run.path.name}: their {split} splits differ "
                    f"(data.{key} {value!r} vs {data[key]!r})"
                )


def ensemble_runs(paths: list[str | Path], rule: str = "average", split: str = "test") -> EnsembleResult:
    """Evaluate runs alone and combined (probability average and majority vote) on their common split."""
    if rule not in COMBINE:
        raise KaizenError(f"--method for finished runs must be {' or '.join(COMBINE)}, not '{rule}'")
    if split not in ("test", "val"):
        raise KaizenError(f"--split must be test or val, not '{split}'")
    if len(paths) < 2:
        raise KaizenError("an ensemble needs at least two runs")
    runs = [load_run(path) for path in paths]
    states = [run.checkpoint() for run in runs]
    check_compatible(runs, states, split)
    evaluator = Evaluator(runs[0].config, split)
    probs = [evaluator.probs(run) for run in runs]
    members = [evaluator.member(run.path.name, run, p) for run, p in zip(runs, probs)]
    return evaluator.result("runs", members, probs, rule)


# ---------------------------------------------------------------------------------- training members


def build_ensemble(
    runs: list[str | Path] | None = None,
    configs: list[Config] | None = None,
    method: str | None = None,
    k: int = 5,
    out_dir: str | Path | None = None,
    split: str = "test",
    progress: Progress | None = None,
) -> EnsembleResult:
    """Combine finished `runs` (rule `method`: average or vote, on `split`), or train the members of `configs`
    (`method`: seeds, bagging, boosting, stacking or snapshot; `k` members, folds or cycles) under `out_dir`.
    Either way `out_dir`, when given, receives ensemble.json. What `kaizen ensemble` does."""
    if runs and configs:
        raise KaizenError("give finished runs to combine, or -c to train members, not both")
    if runs:
        result = ensemble_runs(runs, method or "average", split)
        if out_dir is not None:
            out_dir = Path(out_dir)
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None
            rundir.write_json(out_dir / "ensemble.json", result.to_dict())
        return result
    if out_dir is None:
        raise KaizenError("training an ensemble needs --out DIR for its members' runs")
    return train_ensemble(configs or [Config()], method or "seeds", k, out_dir, progress)


def train_ensemble(
    configs: list[Config], method: str, k: int, out_dir: str | Path, progress: Progress | None = None
) -> EnsembleResult:
    """Train the members of `method` under `out_dir`, evaluate them and the ensemble on the test split, and
    write `out_dir/ensemble.json`. Stacking takes several configs (base learners); the others one."""
    ENSEMBLES.check(method)
    if not configs:
        raise KaizenError("give a config to train the members from (-c FILE)")
    if method != "stacking" and len(configs) > 1:
        raise KaizenError(
            f"--method {method} trains one config; only stacking combines several (-c ... -c ...)"
        )
    if k < 2:
        raise KaizenError(f"-k must be at least 2 (members, folds or cycles), not {k}")
    first = configs[0]
    for cfg in configs[1:]:
        if cfg.data != first.data:
            raise KaizenError("stacking's base configs must share the data section (the same splits)")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None
    result = ENSEMBLES.create(method, configs, k, out_dir, progress or (lambda line: None))
    rundir.write_json(out_dir / "ensemble.json", result.to_dict())
    return result


def _train_member(cfg: Config, out_dir: Path, name: str, overrides: list[str], progress: Progress) -> Run:
    from kaizen.training.loop import fit

    cfg = cfg.override([f"log.runs_dir={out_dir}", f"name={name}", *overrides])
    run = load_run(fit(cfg))
    progress(f"{name}: test accuracy {run.summary['test']['acc']:.2%} -> {run.path}")
    return run


def _independent(
    method: str, configs: list[Config], k: int, out_dir: Path, progress: Progress, extra: list[str]
) -> EnsembleResult:
    """K members that differ in their seed (and what `extra` sets), combined by probability average."""
    cfg = configs[0]
    evaluator = Evaluator(cfg)
    runs = [
        _train_member(
            cfg, out_dir, f"{method}-{i + 1}", [f"train.seed={cfg.train.seed + i}", *extra], progress
        )
        for i in range(k)
    ]
    probs = [evaluator.probs(run) for run in runs]
    members = [evaluator.member(run.path.name, run, p) for run, p in zip(runs, probs)]
    return evaluator.result(method, members, probs)


@ENSEMBLES.register("seeds")
def _seeds(configs: list[Config], k: int, out_dir: Path, progress: Progress) -> EnsembleResult:
    return _independent("seeds", configs, k, out_dir, progress, [])


@ENSEMBLES.register("bagging")
def _bagging(configs: list[Config], k: int, out_dir: Path, progress: Progress) -> EnsembleResult:
    return _independent("bagging", configs, k, out_dir, progress, ["train.bootstrap=true"])


@ENSEMBLES.register("snapshot")
def _snapshot(configs: list[Config], k: int, out_dir: Path, progress: Progress) -> EnsembleResult:
    cfg = configs[0]
    evaluator = Evaluator(cfg)
    run = _train_member(cfg, out_dir, "snapshot", ["schedule.name=cyclic", f"schedule.cycles={k}"], progress)
    names = [f"snapshot-{cycle}.pt" for cycle in range(1, k + 1)]
    names = [name for name in names if (run.path / "checkpoints" / name).is_file()]
    notes = [] if len(names) == k else [f"early stopping left {len(names)} of {k} snapshots"]
    if len(names) < 2:
        raise KaizenError(f"{run.path} left {len(names)} snapshot(s); a snapshot ensemble needs two")
    probs = [evaluator.probs(run, name) for name in names]
    members = [evaluator.member(f"{run.path.name}/{name}", run, p) for name, p in zip(names, probs)]
    return evaluator.result("snapshot", members, probs, notes=notes)


@ENSEMBLES.register("boosting")
def _boosting(configs: list[Config], k: int, out_dir: Path, progress: Progress) -> EnsembleResult:
    cfg = configs[0]
    evaluator = Evaluator(cfg)
    x_train, y_train = evaluator.data.x_train, evaluator.data.y_train
    classes = evaluator.data.num_classes
    weights = np.full(len(y_train), 1.0 / len(y_train))
    weight_dir = out_dir / "boosting-weights"
    weight_dir.mkdir(exist_ok=True)
    runs, alphas, notes = [], [], []
    for index in range(k):
        path = weight_dir / f"member-{index + 1}.npy"
        np.save(path, weights * len(weights))  # mean 1: the loss keeps its unweighted scale
        run = _train_member(
            cfg,
            out_dir,
            f"boosting-{index + 1}",
            [f"train.seed={cfg.train.seed + index}", f"train.sample_weights={path.resolve()}"],
            progress,
        )
        wrong = (evaluator.probs(run, x=x_train).argmax(1) != y_train).numpy()
        error = float(weights[wrong].sum() / weights.sum())
        if error >= 1 - 1 / classes:
            notes.append(
                f"member {index + 1} is no better than chance on the weighted data (error {error:.3f}); stopped"
            )
            break
        alpha = math.log((1 - error) / max(error, 1e-10)) + math.log(classes - 1)
        runs.append(run)
        alphas.append(alpha)
        progress(f"boosting-{index + 1}: weighted training error {error:.4f}, alpha {alpha:.3f}")
        if error == 0:
            notes.append(f"member {index + 1} fits the weighted training data exactly; boosting stopped")
            break
        weights = weights * np.exp(alpha * wrong)
        weights = weights / weights.sum()
    if not runs:
        raise KaizenError("boosting kept no member: the first is no better than chance on the training data")
    probs = [evaluator.probs(run) for run in runs]
    members = [evaluator.member(run.path.name, run, p, alpha) for run, p, alpha in zip(runs, probs, alphas)]
    samme = accuracy(vote(probs, alphas), evaluator.y)
    return evaluator.result("boosting", members, probs, "samme", {"samme": samme}, notes)


@ENSEMBLES.register("stacking")
def _stacking(configs: list[Config], k: int, out_dir: Path, progress: Progress) -> EnsembleResult:
    from sklearn.linear_model import LogisticRegression

    from kaizen.training.examples import fold_assignment

    evaluator = Evaluator(configs[0])
    data = evaluator.data
    y_train = data.y_train.numpy()
    folds = fold_assignment(y_train, k, configs[0].data.split_seed)
    classes = data.num_classes
    out_of_fold = np.zeros((len(y_train), classes * len(configs)), dtype=np.float32)
    test_features = np.zeros((len(evaluator.y), classes * len(configs)), dtype=np.float32)
    members, all_probs = [], []
    for learner, cfg in enumerate(configs):
        columns = slice(learner * classes, (learner + 1) * classes)
        for fold in range(k):
            name = (
                f"stacking-{learner + 1}-fold-{fold + 1}" if len(configs) > 1 else f"stacking-fold-{fold + 1}"
            )
            run = _train_member(cfg, out_dir, name, [f"train.folds={k}", f"train.fold={fold}"], progress)
            held_out = folds == fold
            out_of_fold[held_out, columns] = evaluator.probs(
                run, x=data.train_batch(torch.from_numpy(np.flatnonzero(held_out)))
            ).numpy()
            probs = evaluator.probs(run)
            test_features[:, columns] += probs.numpy() / k
            all_probs.append(probs)
            members.append(evaluator.member(run.path.name, run, probs))
    meta = LogisticRegression(max_iter=2000).fit(out_of_fold, y_train)
    stacked = float((meta.predict(test_features) == evaluator.y.numpy()).mean())
    notes = [
        f"meta-classifier: logistic regression on {k}-fold out-of-fold probabilities of {len(configs)} base config(s)"
    ]
    return evaluator.result("stacking", members, all_probs, "stacking", {"stacking": stacked}, notes)
