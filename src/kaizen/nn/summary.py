"""A Keras-like model summary: output shape, parameters (trainable or not) and MACs of each layer.

Parameters are counted as Keras does: the running mean and variance of norm layers are non-trainable
parameters, so the seed's `Total params: 601,258 / Trainable: 598,090` style of numbers can be compared.
MACs (multiply-accumulates per sample) come from the shapes seen by forward hooks on one dummy sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.table import Table
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_RUNNING_STATS = ("running_mean", "running_var")


@dataclass(frozen=True)
class SummaryRow:
    """One top-level layer: its output shape per sample, parameter counts and MACs per sample."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int  # parameters plus norm running statistics
    trainable: int
    macs: int


@dataclass(frozen=True)
class Summary:
    """The layer table and totals of a model for one input shape."""

    input_shape: tuple[int, ...]
    rows: list[SummaryRow]
    total_params: int
    trainable_params: int
    non_trainable_params: int  # frozen parameters plus norm running statistics
    macs: int


def _counts(module: nn.Module) -> tuple[int, int]:
    """Return (all parameters including norm running statistics, trainable parameters) of `module`."""
    params = list(module.parameters())
    stats = sum(b.numel() for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in _RUNNING_STATS)
    total = sum(p.numel() for p in params) + stats
    return total, sum(p.numel() for p in params if p.requires_grad)


def _macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a dense or conv layer on the whole batch."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel_area = module.weight[0, 0].numel()
    if isinstance(module, _CONV_TRANSPOSES):
        # Every input element is scattered through a kernel into each output channel of its group.
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel_area
    return output.numel() * (module.in_channels // module.groups) * kernel_area


def _rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules that get a row: the top-level layers, with a timm backbone (`body`) shown block by block."""
    rows: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name != "body" or not list(child.children()):
            rows.append((name, child))
            continue
        for inner, block in child.named_children():
            stages = list(block.named_children()) if isinstance(block, nn.Sequential | nn.ModuleList) else []
            if len(stages) > 1 and all(list(stage.children()) for _, stage in stages):
                rows.extend((f"body.{inner}.{index}", stage) for index, stage in stages)
            else:
                rows.append((f"body.{inner}", block))
    return rows or [(type(model).__name__.lower(), model)]


def summarize(model: nn.Module, input_shape: Sequence[int]) -> Summary:
    """Return the Summary of `model` on inputs of per-sample shape `input_shape` (e.g. (1, 28, 28)).

    One zero sample runs through the model in eval mode without gradients; each module's train/eval mode is
    restored afterwards.
    """
    layers = _rows(model)
    row_of = {id(sub): name for name, layer in layers for sub in layer.modules()}
    shapes: dict[str, tuple[int, ...]] = {}
    macs: dict[str, int] = {name: 0 for name, _ in layers}

    def record_shape(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape[1:])

        return hook

    def record_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        macs[row_of[id(module)]] += _macs(module, inputs, output)

    handles = [layer.register_forward_hook(record_shape(name)) for name, layer in layers]
    handles += [
        sub.register_forward_hook(record_macs)
        for sub in model.modules()
        if isinstance(sub, (nn.Linear, *_CONVS, *_CONV_TRANSPOSES)) and id(sub) in row_of
    ]
    modes = {sub: sub.training for sub in model.modules()}
    first = next(model.parameters(), None)
    device, dtype = (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in modes.items():
            sub.training = training

    rows = []
    for name, layer in layers:
        params, trainable = _counts(layer)
        rows.append(
            SummaryRow(name, type(layer).__name__, shapes.get(name, ()), params, trainable, macs[name])
        )
    total, trainable = _counts(model)
    return Summary(tuple(input_shape), rows, total, trainable, total - trainable, sum(macs.values()))


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def render_summary(summary: Summary) -> Table:
    """Return a rich Table like Keras's model.summary(): layer (type), output shape, param #, totals below."""
    table = Table(title=f"Model summary (input {tuple(summary.input_shape)})", title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for row in summary.rows:
        shape = "(N, " + ", ".join(map(str, row.output_shape)) + ")"
        table.add_row(f"{row.name} ({row.type})", shape, f"{row.params:,}")
    table.caption = (
        f"Total params: {summary.total_params:,}\n"
        f"Trainable params: {summary.trainable_params:,}\n"
        f"Non-trainable params: {summary.non_trainable_params:,}\n"
        f"MACs per sample: {summary.macs:,} ({_human(summary.macs)})"
    )
    table.caption_justify = "left"
    return table
