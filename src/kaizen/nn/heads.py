"""Multi-task heads on a classifier: one shared trunk, a head per extra task on the classifier's features.

The heads themselves are built by the task kinds registered in `registry.TASKS` (kaizen.training.multitask,
which also holds their losses); `attach_tasks` puts them on a built model, and `kaizen.nn.build_model` calls it,
so every network kaizen builds (training, summary, inspect, a run's saved model) has its heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kaizen.config import TaskSpec
from kaizen.errors import KaizenError
from kaizen.registry import TASKS


class MultiTaskNet(nn.Module):
    """A classifier's layers (same names, same order) plus `tasks`, a head per extra task on its features."""

    def __init__(self, base: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        for name, child in base.named_children():
            self.add_module(name, child)
        self.tasks = nn.ModuleDict(heads)
        self.task_outputs: dict[str, torch.Tensor] = {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk: every layer before the classifier head."""
        for name, child in self.named_children():
            if name not in ("head", "tasks"):
                x = child(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits; in training mode the other heads' outputs are kept in `task_outputs`."""
        features = self.features(x)
        if self.training:
            self.task_outputs = {name: head(features) for name, head in self.tasks.items()}
        return self.head(features)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task's output: {'class': logits, 'parity': ..., ...}."""
        features = self.features(x)
        return {"class": self.head(features), **{name: head(features) for name, head in self.tasks.items()}}


def attach_tasks(model: nn.Module, tasks: list[TaskSpec], input_shape: Sequence[int]) -> nn.Module:
    """Return `model` with a head for each task other than `class` (the model itself when there is none)."""
    extra = [task.name for task in tasks if task.name != "class"]
    if not extra:
        return model
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise KaizenError("model.tasks needs a model whose classifier is a dense layer named 'head'")
    heads = {name: TASKS.create(name).head(head.in_features, input_shape) for name in extra}
    return MultiTaskNet(model, heads)
