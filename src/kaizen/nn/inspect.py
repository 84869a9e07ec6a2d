"""`kaizen inspect`: one batch through the model, and the statistics of every layer's output (seed 000's tf.Print).

For each layer (every module without children, in the order they run): the output shape, mean, std, min, max,
the count of NaN/Inf values and the layer's parameter count. A layer whose output is constant (std 0), huge or
not finite is where a bug or a bad initialisation shows first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich import box
from rich.table import Table
from torch import nn

from kaizen.config import Config
from kaizen.data import load_data
from kaizen.nn import build_model


@dataclass(frozen=True)
class LayerOutput:
    """The statistics of one layer's output on one batch."""

    name: str
    type: str
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    nonfinite: int  # NaN and Inf values
    params: int


def inspect_batch(model: nn.Module, batch: torch.Tensor, train_mode: bool = True) -> list[LayerOutput]:
    """Run `batch` through `model` without gradients and return each leaf layer's output statistics.

    `train_mode` runs it as a training step does (batch norm on batch statistics, dropout active); False
    runs it as inference does. The model's modes are restored afterwards. The first row is the input.
    """
    rows = [_describe("input", "batch", batch, 0)]

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                params = sum(param.numel() for param in module.parameters(recurse=False))
                rows.append(_describe(name, type(module).__name__, output, params))

        return hook

    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    handles = [module.register_forward_hook(record(name)) for name, module in leaves]
    modes = {module: module.training for module in model.modules()}
    try:
        model.train(train_mode)
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return rows


def _describe(name: str, kind: str, tensor: torch.Tensor, params: int) -> LayerOutput:
    values = tensor.detach().float()
    finite = values[torch.isfinite(values)]
    nonfinite = values.numel() - finite.numel()
    if finite.numel() == 0:
        mean = std = low = high = math.nan
    else:
        mean, low, high = finite.mean().item(), finite.min().item(), finite.max().item()
        std = finite.std().item() if finite.numel() > 1 else 0.0
    return LayerOutput(name, kind, tuple(tensor.shape), mean, std, low, high, nonfinite, params)


def render_inspection(rows: list[LayerOutput], title: str) -> Table:
    """A table of the rows; NaN/Inf counts, constant outputs (std 0) and huge values are marked in red.

    Shapes are per sample (the batch size is in the title), numbers have 3 significant digits, so the table
    fits an 80-column terminal.
    """
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("layer  type", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    for column in ("mean", "std", "min", "max", "NaN/Inf", "params"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        constant = row.std == 0 and row.type != "batch"
        huge = max(abs(row.min), abs(row.max)) > 1e3 if math.isfinite(row.min) else False
        table.add_row(
            f"{row.name} [dim]{row.type}[/]",
            "×".join(map(str, row.shape[1:])),
            _short(row.mean),
            _red(_short(row.std), constant),
            _red(_short(row.min), huge),
            _red(_short(row.max), huge),
            _red(f"{row.nonfinite:,}", row.nonfinite > 0),
            f"{row.params:,}",
        )
    total = sum(row.params for row in rows)
    table.caption = f"{total:,} parameters · red: NaN/Inf, constant output (std 0) or |value| > 1e3"
    table.caption_justify = "left"
    return table


def _short(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def _red(text: str, flagged: bool) -> str:
    return f"[red]{text}[/]" if flagged else text


def inspect_config(cfg: Config, batch_size: int | None = None, train_mode: bool = True) -> list[LayerOutput]:
    """Build `cfg`'s model (initialised with its seed) and inspect it on the first training batch."""
    from kaizen.nn.backbone import resolve

    cfg = resolve(cfg)  # a backbone's image size, as training resolves it
    data = load_data(cfg.data, "cpu")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)
    return inspect_batch(
        model,
        data.train_batch(torch.arange(min(batch_size or cfg.train.batch_size, len(data.y_train)))),
        train_mode,
    )
