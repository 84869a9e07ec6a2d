"""TensorBoard events of a run (`tensorboard --logdir runs`), written under `<run>/tb/`.

A thin layer over `torch.utils.tensorboard.SummaryWriter`, imported only when a run asks for TensorBoard, so
`import kaizen` stays fast and a missing `tensorboard` package is one clear line, not a traceback. The x axis
of every chart is the epoch. Also here: `filter_grid`, the first conv layer's filters as one image (seed 000's
`tf.summary.image` of the transposed W_conv).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from kaizen.errors import KaizenError

# TensorBoard shows about 30 buckets; 64 equal-width buckets keep that detail.
HISTOGRAM_BINS = 64


class TensorBoard:
    """Writes scalars, histograms, images and the model graph of one run to `log_dir`."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise KaizenError(
                "log.tensorboard is on but the tensorboard package is missing: "
                "pip install tensorboard, or --set log.tensorboard=false"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, epoch: int, values: dict[str, float]) -> None:
        """One point per tag at `epoch`; non-finite values are skipped (TensorBoard cannot draw them)."""
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, epoch)

    def histogram(self, epoch: int, tag: str, values: torch.Tensor) -> None:
        """A histogram of `values` at `epoch`, plus their mean, std, min and max as scalars (seed 000).

        The buckets and sums are computed here in torch and handed over raw: TensorBoard's own path goes
        through numpy and costs several times more per tensor.
        """
        values = values.detach().flatten().cpu().double()
        values = values[torch.isfinite(values)]
        count = values.numel()
        if count == 0:
            return
        low, high = values.min().item(), values.max().item()
        top = high if high > low else low + max(abs(low), 1.0) * 1e-6  # one value: one narrow bucket
        counts = torch.histc(values, bins=HISTOGRAM_BINS, min=low, max=top)
        total, squares = values.sum().item(), values.pow(2).sum().item()
        self.writer.add_histogram_raw(
            tag,
            min=low,
            max=high,
            num=count,
            sum=total,
            sum_squares=squares,
            bucket_limits=torch.linspace(low, top, HISTOGRAM_BINS + 1)[1:].tolist(),
            bucket_counts=counts.tolist(),
            global_step=epoch,
        )
        mean = total / count
        std = values.std().item() if count > 1 else 0.0
        self.scalars(epoch, {f"{tag}/mean": mean, f"{tag}/std": std, f"{tag}/min": low, f"{tag}/max": high})

    def image(self, epoch: int, tag: str, image: torch.Tensor) -> None:
        """An image (C×H×W, values in [0, 1]) at `epoch`."""
        self.writer.add_image(tag, image.cpu(), epoch, dataformats="CHW")

    def graph(self, model: nn.Module, example: torch.Tensor) -> None:
        """The model graph, traced on `example` in inference mode; the model's modes are restored after."""
        modes = {module: module.training for module in model.modules()}
        model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings say nothing the user can act on
                self.writer.add_graph(model, example)
        except Exception as error:  # a model the tracer cannot follow still trains; say so in the log
            self.writer.add_text("graph", f"the model graph could not be traced: {type(error).__name__}")
        finally:
            for module, training in modes.items():
                module.training = training

    def flush(self) -> None:
        """Make everything written so far visible to a running `tensorboard`."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def filter_grid(weight: torch.Tensor, scale: int = 8, columns: int = 8) -> torch.Tensor:
    """Return the filters of a conv weight (out × in × k × k) as one RGB image (3×H×W, values in [0, 1]).

    Each filter is scaled to [0, 1] on its own and shown in gray (1 input channel), in colour (3) or as the
    mean over its input channels (others), enlarged `scale` times (a 3×3 filter is otherwise a few dots) and
    laid out in a grid of `columns`, framed in blue so that light filters stand apart.
    """
    filters = weight.detach().float().cpu()
    if filters.shape[1] != 3:
        filters = filters.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    low = filters.amin(dim=(1, 2, 3), keepdim=True)
    high = filters.amax(dim=(1, 2, 3), keepdim=True)
    filters = (filters - low) / (high - low).clamp_min(1e-12)
    filters = filters.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    count, _, height, width = filters.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    border = 2
    frame = torch.tensor([0.2, 0.4, 0.8])[:, None, None]
    grid = frame.expand(3, rows * (height + border) + border, columns * (width + border) + border).clone()
    for index in range(count):
        top = border + (index // columns) * (height + border)
        left = border + (index % columns) * (width + border)
        grid[:, top : top + height, left : left + width] = filters[index]
    return grid
