"""Transfer learning and fine-tuning (seed 000): load weights by name pattern, choose which layers train.

`init_weights` copies the weights (and norm statistics) whose names match `transfer.init_load` from another
run or checkpoint, and reports what loaded, what was skipped and what did not fit. `FineTune` freezes
parameters (`train_only`, `freeze`), keeps the batch-norm statistics of frozen layers frozen (those layers
stay in eval mode while the rest trains) and unfreezes on a schedule, block by block from the head backwards
(`unfreeze_every`) or by pattern (`unfreeze`). `lr_multiplier` gives discriminative learning rates.

Patterns are shell-style and match a parameter's full name or any enclosing module's name: `fc1` matches
`fc1.weight` and `fc1.bias`, `res2` everything inside the second residual block, `conv*` every conv layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.config import TransferConfig
from kaizen.errors import KaizenError
from kaizen.nn.init import WEIGHT_LAYERS
from kaizen.nn.layers import activation_classes
from kaizen.run import load_run
from kaizen.track import rundir

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
SHOWN_LAYERS = 12  # layer names listed when a pattern matches nothing


def matches(name: str, pattern: str) -> bool:
    """Whether `pattern` matches the dotted `name` or one of its prefixes (`fc1` matches `fc1.weight`)."""
    parts = name.split(".")
    return any(fnmatchcase(".".join(parts[:end]), pattern) for end in range(1, len(parts) + 1))


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether any of `patterns` matches `name`."""
    return any(matches(name, pattern) for pattern in patterns)


def layer_names(names: Iterable[str]) -> list[str]:
    """The modules owning the named tensors, in order: fc1.weight, fc1.bias, head.weight -> fc1, head."""
    return list(dict.fromkeys(name.rpartition(".")[0] or name for name in names))


def check_patterns(patterns: Iterable[str], names: list[str], key: str) -> None:
    """Raise a KaizenError naming the first pattern that matches none of `names`, with layer names to use."""
    for pattern in patterns:
        if not any(matches(name, pattern) for name in names):
            layers = layer_names(names)
            shown = ", ".join(layers[:SHOWN_LAYERS]) + (", ..." if len(layers) > SHOWN_LAYERS else "")
            raise KaizenError(f"{key}: pattern '{pattern}' matches no parameter; the layers are {shown}")


# ----------------------------------------------------------------------------------------- loading


@dataclass
class TransferReport:
    """What `init_weights` did with each tensor of the source."""

    source: str
    loaded: list[str] = field(default_factory=list)
    not_selected: list[str] = field(default_factory=list)  # in the source, not matched by init_load
    not_here: list[str] = field(default_factory=list)  # matched, but this model has no such tensor
    mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # name: (there, here)
    kept: list[str] = field(default_factory=list)  # this model's tensors left at their initialisation

    def line(self) -> str:
        """One line for people: counts, with the layers involved."""
        parts = [f"loaded {len(self.loaded)} tensors ({_layers(self.loaded)})"]
        if self.not_selected:
            parts.append(f"skipped {len(self.not_selected)} not in init_load ({_layers(self.not_selected)})")
        if self.not_here:
            parts.append(f"skipped {len(self.not_here)} absent here ({_layers(self.not_here)})")
        if self.mismatched:
            name, (there, here) = next(iter(self.mismatched.items()))
            parts.append(
                f"skipped {len(self.mismatched)} of another shape ({name} is {tuple(there)} there, "
                f"{tuple(here)} here)"
            )
        if self.kept:
            parts.append(f"left as initialised: {_layers(self.kept)}")
        return f"transfer from {self.source}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for summary.json)."""
        return {
            "source": self.source,
            "loaded": self.loaded,
            "not_selected": self.not_selected,
            "not_here": self.not_here,
            "mismatched": {
                name: {"there": there, "here": here} for name, (there, here) in self.mismatched.items()
            },
            "kept": self.kept,
        }


def _layers(names: list[str], shown: int = 6) -> str:
    layers = layer_names(names)
    return ", ".join(layers[:shown]) + (f" and {len(layers) - shown} more" if len(layers) > shown else "")


def read_source(init_from: str) -> tuple[dict[str, torch.Tensor], str]:
    """Return (state dict, description) of a run directory (the checkpoint it ended with) or a checkpoint."""
    path = Path(init_from)
    if path.is_dir():
        run = load_run(path)
        name = run.summary.get("checkpoint")
        if name is None:  # an unfinished run: its best weights so far, else its last
            name = "best.pt" if (path / "checkpoints" / "best.pt").is_file() else "last.pt"
        state = run.checkpoint(name)
        label = f"{path} ({name})"
    elif path.is_file():
        state = rundir.load_checkpoint(path)
        label = str(path)
    else:
        raise KaizenError(f"transfer.init_from: no run directory or checkpoint at {path}")
    weights = state.get("model") if isinstance(state, dict) and "model" in state else state
    if (
        not isinstance(weights, dict)
        or not weights
        or not all(isinstance(value, torch.Tensor) for value in weights.values())
    ):
        raise KaizenError(f"transfer.init_from: {label} holds no model weights")
    return weights, label


def init_weights(model: nn.Module, cfg: TransferConfig) -> TransferReport | None:
    """Load the weights of `cfg.init_from` that match `cfg.init_load` into `model`; None without init_from.

    A tensor of another shape is skipped and reported (an error under `cfg.strict`, as is a selected tensor
    this model lacks). When tensors were skipped and no dense or conv weight loaded, the source is another
    architecture: an error.
    """
    if cfg.init_from is None:
        return None
    source, label = read_source(cfg.init_from)
    check_patterns(cfg.init_load, list(source), "transfer.init_load")
    own = model.state_dict()
    report = TransferReport(source=label)
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        if not matches_any(name, cfg.init_load):
            report.not_selected.append(name)
        elif name not in own:
            report.not_here.append(name)
        elif tensor.shape != own[name].shape:
            report.mismatched[name] = (list(tensor.shape), list(own[name].shape))
        else:
            loaded[name] = tensor
    report.loaded = list(loaded)
    report.kept = [name for name in own if name not in loaded]
    if cfg.strict and (report.mismatched or report.not_here):
        what = (
            f"{next(iter(report.mismatched))} has another shape"
            if report.mismatched
            else f"{report.not_here[0]} is not in this model"
        )
        raise KaizenError(f"transfer.strict: cannot load {label} exactly: {what} ({report.line()})")
    layer_weights = {
        f"{name}.weight" for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)
    }
    if (report.mismatched or report.not_here) and not layer_weights.intersection(loaded):
        # a norm's statistics may fit by chance; without one dense or conv weight this is no transfer
        raise KaizenError(
            f"transfer.init_from: nothing of {label} fits this model (another architecture?): {report.line()}"
        )
    model.load_state_dict({**own, **loaded})
    return report


# ------------------------------------------------------------------------------------------ fine-tuning


def lr_multiplier(cfg: TransferConfig) -> Callable[[str], float] | None:
    """Return name -> multiplier of optim.lr (first matching `lr_groups` pattern, else 1); None when unused."""
    if not cfg.lr_groups:
        return None

    def multiplier(name: str) -> float:
        return next((value for pattern, value in cfg.lr_groups.items() if matches(name, pattern)), 1.0)

    return multiplier


def unfreeze_blocks(model: nn.Module) -> list[list[str]]:
    """Parameter names of the model's blocks, input first: a top-level layer with weights, plus the norms,
    activations (PReLU) and task heads that follow it."""
    blocks: list[list[str]] = []
    joining = (*NORM_TYPES, *activation_classes())
    for child_name, child in model.named_children():
        names = [f"{child_name}.{name}" for name, _ in child.named_parameters()]
        if not names:
            continue
        joins = isinstance(child, joining) or child_name == "tasks"
        if joins and blocks:
            blocks[-1].extend(names)
        else:
            blocks.append(names)
    return blocks


class FineTune:
    """Freezing, frozen batch-norm statistics and gradual unfreezing; `start_epoch` after each model.train()."""

    def __init__(self, model: nn.Module, cfg: TransferConfig):
        self.model = model
        self.cfg = cfg
        self.parameters = dict(model.named_parameters())
        names = list(self.parameters)
        check_patterns(cfg.train_only, names, "transfer.train_only")
        check_patterns(cfg.freeze, names, "transfer.freeze")
        check_patterns(cfg.lr_groups, names, "transfer.lr_groups")
        for index, step in enumerate(cfg.unfreeze):
            check_patterns(step.patterns, names, f"transfer.unfreeze[{index}]")
        self.frozen = {
            name
            for name in names
            if (cfg.train_only and not matches_any(name, cfg.train_only)) or matches_any(name, cfg.freeze)
        }
        if (cfg.unfreeze_every or cfg.unfreeze) and not self.frozen:
            raise KaizenError(
                "transfer.unfreeze needs frozen layers to unfreeze: set transfer.train_only or transfer.freeze"
            )
        if self.frozen and len(self.frozen) == len(names):
            raise KaizenError("transfer.train_only / transfer.freeze leave no parameter to train")
        # from the head backwards, only blocks that start (partly) frozen
        self.blocks = [block for block in reversed(unfreeze_blocks(model)) if self.frozen.intersection(block)]
        self.batch_norms = [
            module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
        ]
        self._set_trainable(0)

    def frozen_at(self, epoch: int) -> set[str]:
        """The names of the parameters frozen during `epoch` (0-based)."""
        frozen = set(self.frozen)
        if self.cfg.unfreeze_every:
            for block in self.blocks[: epoch // self.cfg.unfreeze_every]:
                frozen.difference_update(block)
        for step in self.cfg.unfreeze:
            if epoch + 1 >= step.epoch:
                frozen = {name for name in frozen if not matches_any(name, step.patterns)}
        return frozen

    def _set_trainable(self, epoch: int) -> None:
        frozen = self.frozen_at(epoch)
        for name, parameter in self.parameters.items():
            parameter.requires_grad_(name not in frozen)

    def start_epoch(self, epoch: int) -> None:
        """Set what trains in `epoch` (0-based) and put frozen batch norms in eval mode (their statistics
        stay those of the pretrained model). Call right after `model.train()`."""
        if not self.frozen:
            return
        self._set_trainable(epoch)
        for module in self.batch_norms:
            parameters = list(module.parameters())
            if parameters and not any(parameter.requires_grad for parameter in parameters):
                module.eval()
