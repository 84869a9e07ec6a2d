"""Multi-task learning (seed 001): one shared trunk, several heads, a weighted sum of their losses.

The classifier stays the model's output (`model(x)` gives class logits), so evaluation, prediction, ensembles
and export work unchanged. The other heads read the trunk's features, the input of the classifier `head`;
in training mode the model keeps their outputs for the loss (the network with its heads is built by
kaizen.nn.build_model). Task kinds are registered in `registry.TASKS`:

- `class`: the classifier itself (listing it only sets its loss weight);
- `parity`: odd or even, from the class name when names are whole numbers (digits), else the class index;
- `reconstruction`: the input image again, decoded from the features by a dense layer and transposed convs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kaizen.config import TaskSpec
from kaizen.data.augment import Batch
from kaizen.nn.heads import MultiTaskNet
from kaizen.registry import TASKS

DECODER_WIDTH = 16  # channels of the reconstruction decoder's smallest feature map


class Task:
    """A task kind: its head, its training loss and its metric on a whole split."""

    metric = ""

    def prepare(self, class_names: Sequence[str]) -> None:
        """Learn what the task needs of the dataset's classes (before `loss` and `score`)."""

    def head(self, features: int, input_shape: Sequence[int]) -> nn.Module | None:
        """The head reading `features` trunk features (None: the classifier itself)."""
        return None

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The task's loss on a training batch."""
        raise NotImplementedError

    def score(self, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """The task's metric (`self.metric`) on an evaluation set."""
        raise NotImplementedError


@TASKS.register("class")
class ClassTask(Task):
    """The classifier: no head of its own; its loss is the run's classification loss."""

    metric = "acc"

    def score(self, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        return (output.argmax(1) == y).float().mean().item()


@TASKS.register("parity")
class ParityTask(Task):
    """Odd or even: a 2-way head trained with cross-entropy; metric accuracy."""

    metric = "acc"

    def prepare(self, class_names: Sequence[str]) -> None:
        numbers = [int(name) for name in class_names] if all(_whole(name) for name in class_names) else None
        self.targets = torch.tensor(numbers or range(len(class_names))) % 2

    def head(self, features: int, input_shape: Sequence[int]) -> nn.Module:
        return nn.Linear(features, 2)

    def _target(self, y: torch.Tensor) -> torch.Tensor:
        if self.targets.device != y.device:
            self.targets = self.targets.to(y.device)
        return self.targets[y]

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = F.cross_entropy(output, self._target(batch.y))
        if batch.mix_weight is not None:
            mixed = F.cross_entropy(output, self._target(batch.y_mixed))
            loss = batch.mix_weight * loss + (1 - batch.mix_weight) * mixed
        return loss

    def score(self, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        return (output.argmax(1) == self._target(y)).float().mean().item()


@TASKS.register("reconstruction")
class ReconstructionTask(Task):
    """The input image decoded from the features; mean squared error in normalised pixel units."""

    metric = "mse"

    def head(self, features: int, input_shape: Sequence[int]) -> nn.Module:
        return decoder(features, input_shape)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.mse_loss(output, batch.x)

    def score(self, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        return F.mse_loss(output, x).item()


def _whole(name: str) -> bool:
    return name.lstrip("-").isdigit()


def decoder(features: int, input_shape: Sequence[int]) -> nn.Sequential:
    """Features -> image: a dense layer to a small map, then 2×2 stride-2 transposed convs up to C×H×W.

    It doubles the map twice when H and W divide by 4 (8×8 from 2×2, 28×28 from 7×7), once when they divide
    by 2, and otherwise decodes at full size with one 1×1 transposed conv.
    """
    channels, height, width = input_shape
    doublings = next(n for n in (2, 1, 0) if height % 2**n == 0 and width % 2**n == 0)
    small = (DECODER_WIDTH, height // 2**doublings, width // 2**doublings)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        fc=nn.Linear(features, small[0] * small[1] * small[2]),
        act=nn.ReLU(),
        unflatten=nn.Unflatten(1, small),
    )
    width_in = DECODER_WIDTH
    for index in range(1, max(doublings, 1) + 1):
        last = index == max(doublings, 1)
        width_out = channels if last else width_in // 2
        kernel = 2 if doublings else 1
        layers[f"deconv{index}"] = nn.ConvTranspose2d(width_in, width_out, kernel, stride=kernel)
        if not last:
            layers[f"act{index}"] = nn.ReLU()
        width_in = width_out
    return nn.Sequential(layers)


class TaskObjective:
    """The training objective and the metrics of a multi-task model (also of `class` alone, weighted)."""

    def __init__(self, model: nn.Module, tasks: list[TaskSpec], class_names: Sequence[str]):
        self.model = model
        weights = {task.name: task.weight for task in tasks}
        self.class_weight = weights.pop("class", 1.0)
        self.tasks = {name: (TASKS.create(name), weight) for name, weight in weights.items()}
        for task, _ in self.tasks.values():
            task.prepare(class_names)
        self.classifier = ClassTask()

    def objective(self, class_loss: torch.Tensor, batch: Batch) -> torch.Tensor:
        """class weight × class loss + Σ weight × task loss, from the outputs of the last forward pass."""
        total = class_loss * self.class_weight
        for name, (task, weight) in self.tasks.items():
            total = total + weight * task.loss(self.model.task_outputs[name], batch)
        return total

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, dict[str, float]]:
        """{task: {metric: value}} on (x, y), in eval mode without gradients; the mode is restored."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                outputs = [
                    self._outputs(x[start : start + batch_size]) for start in range(0, len(x), batch_size)
                ]
        finally:
            self.model.train(was_training)
        merged = {name: torch.cat([batch[name] for batch in outputs]) for name in outputs[0]}
        scores = {"class": {"acc": self.classifier.score(merged["class"], x, y)}}
        for name, (task, _) in self.tasks.items():
            scores[name] = {task.metric: task.score(merged[name], x, y)}
        return scores

    def _outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.model, MultiTaskNet):
            return self.model.forward_all(x)
        return {"class": self.model(x)}

    def metrics(self, has_val: bool, batch_size: int) -> dict[str, Any]:
        """Custom metrics for the statistics recorder: each extra task's metric on the validation split."""
        if not has_val:
            return {}

        def metric(name: str, key: str):
            def value(model: nn.Module, data: Any) -> float:
                return self.evaluate(data.x_val, data.y_val, batch_size)[name][key]

            return value

        return {
            f"val_{name}_{task.metric}": metric(name, task.metric) for name, (task, _) in self.tasks.items()
        }
