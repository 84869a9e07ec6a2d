"""`kaizen lr-find`: the learning-rate range test (Smith 2017), with a suggestion that noise does not move much.

The rate grows exponentially from START to END over at most one epoch of the config's data, model and
optimiser (no schedule, no augmentation); the loss of each step is smoothed with a bias-corrected
exponential average, and the test stops when the smoothed loss exceeds BLOW_UP times its minimum or is not
finite. The suggestion is the "valley" rule: a tenth of the rate at the smoothed loss's minimum, a point the
whole curve agrees on. The steepest-slope rule (the rate where the smoothed loss falls fastest) is shown
beside it; it reads the derivative of a noisy curve. Against the best rate of a 7-point grid of full runs
(benchmarks/lr_find_grid.py, SGD and Adam on digits and mnist-10k) the valley rule was at most 0.59 decades
off, the steepest-slope rule up to 1.24.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.track import rundir
from kaizen.training import estimate
from kaizen.training.threads import set_threads

START, END = 1e-7, 10.0
MAX_STEPS = 200  # at most one epoch, and at most this many steps
MIN_STEPS = 20  # fewer points than this cannot show a curve: batches are made smaller to reach it
SMOOTHING = 0.9  # exponential average of the step losses, bias-corrected
BLOW_UP = 4.0  # stop when the smoothed loss is this many times its minimum
VALLEY_FACTOR = 10.0  # suggestion: the rate at the minimum divided by this


@dataclass
class RangeTest:
    """The range test's curve and suggestions."""

    lrs: list[float]
    losses: list[float]  # raw step losses
    smoothed: list[float]
    suggestion: float | None  # valley rule
    steepest: float | None  # steepest-slope rule
    stopped: str  # why the test ended
    optimizer: str
    batch_size: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain data (JSON ready)."""
        return {
            "optimizer": self.optimizer,
            "batch_size": self.batch_size,
            "suggestion": self.suggestion,
            "rule": f"valley: the rate at the smoothed loss's minimum / {VALLEY_FACTOR:g}",
            "steepest_slope": self.steepest,
            "stopped": self.stopped,
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
        }


def range_test(cfg: Config) -> RangeTest:
    """Run the range test on `cfg`; KaizenError on bad input or when the loss is NaN from the first step."""
    from kaizen.data import load_data
    from kaizen.nn import build_model
    from kaizen.training.optim import build_optimizer

    set_threads(cfg.train.threads)  # the cores free when unset
    estimate.check(cfg, "cpu")  # a model or image size that cannot fit: one line, before decoding
    data = load_data(cfg.data, "cpu")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)
    optimizer = build_optimizer(model, cfg.optim)
    n = len(data.y_train)
    if n < 2 * MIN_STEPS:  # batches of 2 at least (batch norm needs 2), MIN_STEPS of them at least
        raise KaizenError(
            f"lr-find needs at least {2 * MIN_STEPS} training images ({MIN_STEPS} steps of 2), and the training "
            f"split holds {n}: so few steps cannot show a curve; raise data.fraction, lower data.val_split, or "
            "keep the usual rate of the optimiser"
        )
    batch = max(2, min(cfg.train.batch_size, n // MIN_STEPS))
    steps = min(MAX_STEPS, n // batch)
    factor = (END / START) ** (1 / max(1, steps - 1))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.train.seed))
    lrs, losses, smoothed = [], [], []
    average, best, stopped = 0.0, math.inf, f"reached lr {END:g}"
    model.train()
    for step in range(steps):
        lr = START * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = order[step * batch : (step + 1) * batch]
        loss = nn.functional.cross_entropy(model(data.train_batch(index)), data.y_train[index])
        value = loss.item()
        if not math.isfinite(value):
            if step == 0:
                raise KaizenError(
                    f"the loss is {value} from the first step (lr {lr:.1e}): the model or data is broken, not the "
                    "rate; run kaizen check"
                )
            stopped = f"loss not finite at lr {lr:.3g}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        current = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(current)
        best = min(best, current)
        if current > BLOW_UP * best:
            stopped = f"smoothed loss {current:.3g} > {BLOW_UP:g}× its minimum at lr {lr:.3g}"
            break
    suggestion, steepest = _suggest(lrs, smoothed)
    return RangeTest(lrs, losses, smoothed, suggestion, steepest, stopped, cfg.optim.name, batch)


def _suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(valley rule, steepest-slope rule); None where the curve never fell."""
    if len(smoothed) < 3:
        return None, None
    low = min(range(len(smoothed)), key=smoothed.__getitem__)
    if smoothed[low] >= smoothed[0]:
        return None, None
    slopes = [
        (smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
        for i in range(1, low)
    ]
    steepest = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else None
    return lrs[low] / VALLEY_FACTOR, steepest


def plot(result: RangeTest, path: Path) -> Path:
    """Write the curve with both suggestions to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="step loss")
    axes.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    if result.suggestion:
        axes.axvline(
            result.suggestion, color="C2", linestyle="--", label=f"suggestion {result.suggestion:.2g}"
        )
    if result.steepest:
        axes.axvline(
            result.steepest, color="C1", linestyle=":", label=f"steepest slope {result.steepest:.2g}"
        )
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    top = 2 * max(result.smoothed[: max(1, len(result.smoothed) // 2)] or [1.0])
    axes.set_ylim(0, top)
    axes.set_title(f"lr range test: {result.optimizer}, batch {result.batch_size}")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    rundir.atomic_write_bytes(path, buffer.getvalue())  # replaces a link at `path`, never writes through it
    return path
