"""The memory a run will need, estimated before anything is decoded or allocated.

A config can ask for far more than a machine has (`model.hidden: [100000000]`, `data.image_size: 100000`); left
alone, that is a MemoryError or a swapping machine some minutes later. The model is built on PyTorch's meta
device (shapes, no storage) and one batch is passed through it there, so the estimate costs milliseconds:
weights, their gradients and two optimiser slots per weight (Adam's), the activations of one batch kept for
the backward pass and their gradients, and the input batch as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kaizen import registry
from kaizen.config import Config
from kaizen.data.memory import free_bytes
from kaizen.errors import KaizenError
from kaizen.sizes import describe_bytes

FLOAT = 4  # bytes
TRAINING_COPIES = 4  # weights, gradients, two optimiser slots


@dataclass(frozen=True)
class Estimate:
    """Bytes a training step needs: `weights` (with gradients and optimiser state), `activations` (of one
    batch, with their gradients) and `inputs` (the batch as float32); `params` counts the weights."""

    params: int
    weights: int
    activations: int
    inputs: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.inputs


def estimate(cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> Estimate:
    """The estimate for `cfg` on inputs of `input_shape` (C, H, W), built on the meta device."""
    from kaizen.nn import build_model

    outputs: list[int] = []

    def count(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel())

    batch = cfg.train.batch_size
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.init, tuple(input_shape), num_classes)
        leaves = [module for module in model.modules() if not list(module.children())]
        hooks = [module.register_forward_hook(count) for module in leaves]
        try:
            model.train()
            model(torch.empty(batch, *input_shape))
        except Exception:  # a layer without a meta kernel: the weights alone still say a great deal
            outputs.clear()
        finally:
            for hook in hooks:
                hook.remove()
    params = sum(parameter.numel() for parameter in model.parameters())
    pixels = batch
    for side in input_shape:
        pixels *= int(side)
    return Estimate(params, params * FLOAT * TRAINING_COPIES, sum(outputs) * FLOAT * 2, pixels * FLOAT)


def culprit(cfg: Config, found: Estimate) -> str:
    """The setting to change: the model's size when its weights weigh most, else the images' or batch's (a
    backbone is named either way: a smaller one is the first remedy)."""
    if cfg.model.backbone is not None:
        return f"model.backbone = {cfg.model.backbone}"
    if found.weights >= found.activations + found.inputs:
        if cfg.model.preset == "mlp":
            return f"model.hidden = {cfg.model.hidden}"
        return "model.layers" if cfg.model.preset is None else f"model.preset = {cfg.model.preset}"
    if cfg.data.name == "folder" and cfg.data.image_size != "auto":
        return f"data.image_size = {cfg.data.image_size}"
    return f"train.batch_size = {cfg.train.batch_size}"


def describe(cfg: Config, found: Estimate, free: int) -> str:
    """One line: the estimate, what it is made of, what is free, and the setting to change."""
    return (
        f"{culprit(cfg, found)} needs about {describe_bytes(found.total)} to train "
        f"({found.params:,} weights with gradients and optimiser state {describe_bytes(found.weights)}; "
        f"one batch of {cfg.train.batch_size}: activations {describe_bytes(found.activations)}, inputs "
        f"{describe_bytes(found.inputs)}), and {describe_bytes(free)} is available"
    )


def check(cfg: Config, device: torch.device | str, shape: tuple[tuple[int, ...], int] | None = None) -> bool:
    """KaizenError when a run of `cfg` cannot fit in `device`'s free memory. The data's shape is read from its
    headers when that is cheap (`shape` given, or a format that knows it without loading); return False when
    it is not (then call again with the loaded data's shape)."""
    device = torch.device(device)
    if shape is None:
        reader = registry.DATASETS.traits(cfg.data.name).shape
        if reader is None:
            return False
        shape = reader(cfg.data)
    found = estimate(cfg, *shape)
    free = free_bytes(device)
    if found.total > free:
        raise KaizenError(describe(cfg, found, free) + "; make it smaller")
    return True
