"""Per-layer training statistics, sampled every N steps: what `kaizen doctor` and the pictures read.

On a sampled step the recorder measures, for each dense/conv layer, the L2 norm of the weight gradient (raw,
before clipping), the weight norm and the update-to-weight ratio ||ΔW|| / ||W|| of the optimiser step; for
each activation layer the mean, std, min and max of its output, the fraction of dead units (activations of the 'relu'
family: a unit, or a conv channel, that is inactive for every sample of every sampled batch of the epoch) and
the fraction of saturated outputs (squashing activations beyond the `saturation` bounds of their registry
entry: sigmoid below 0.01 or above 0.99, tanh beyond ±0.99, where the derivative is under 4% and 2% of its
peak). At the end of an epoch the samples become one `stats.jsonl` record per layer,
and TensorBoard gets histograms of weights, biases, gradients and activations and the first conv layer's
filters.

Steps that are not sampled cost one integer test per named point: no hooks are attached and nothing is
synchronised with the host. A sampled step synchronises once, after the optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from kaizen.config import LogConfig
from kaizen.nn import activation_modules
from kaizen.nn.init import WEIGHT_LAYERS
from kaizen.nn.layers import activation_classes, activation_name
from kaizen.registry import ACTIVATIONS
from kaizen.track.tensorboard import filter_grid

if TYPE_CHECKING:
    from kaizen.track.writer import RunWriter

# Sampled steps per epoch when `log.stats_every` is null; benchmarks/stats_overhead.py measures the cost.
SAMPLES_PER_EPOCH = 4
HISTOGRAM_BINS = 30
HISTOGRAM_VALUES = 4096  # activation values kept per layer for the histograms (a strided subsample)
# A deep backbone has hundreds of layers: record at most this many weight layers (and as many activations),
# evenly spaced from the first to the last, so the record stays small and the doctor still sees every depth.
MAX_RECORDED_LAYERS = 32

Metric = Callable[[nn.Module, Any], float]


def representative(layers: dict[str, nn.Module], limit: int = MAX_RECORDED_LAYERS) -> dict[str, nn.Module]:
    """At most `limit` of `layers`, evenly spaced in order, the first and the last always among them."""
    if len(layers) <= limit:
        return layers
    names = list(layers)
    kept = sorted({round(index * (len(names) - 1) / (limit - 1)) for index in range(limit)})
    return {names[index]: layers[names[index]] for index in kept}


def sample_every(steps_per_epoch: int, every: int | None) -> int:
    """The sampling interval in steps: `every`, or one giving SAMPLES_PER_EPOCH samples; at most one epoch."""
    return max(1, min(every or steps_per_epoch // SAMPLES_PER_EPOCH, steps_per_epoch))


class StatsRecorder:
    """Hooks into the training loop at named points and records statistics on sampled steps.

    The loop calls `before_forward(step)`, `after_backward(step)` (before clipping), `after_step(step)`
    and `end_epoch(epoch, data)`; `abort(epoch)` keeps what an epoch that broke off (divergence) measured.
    `metrics` are custom metrics, `{name: fn(model, data) -> float}`, evaluated (in inference mode) at each
    epoch end and written to stats.jsonl and TensorBoard. `example`, a small input batch, draws the model
    graph in TensorBoard.
    """

    def __init__(
        self,
        model: nn.Module,
        log: LogConfig,
        steps_per_epoch: int,
        writer: RunWriter,
        metrics: dict[str, Metric] | None = None,
        example: torch.Tensor | None = None,
    ):
        self.model = model
        self.writer = writer
        self.metrics = metrics or {}
        self.histograms = writer.wants_histograms
        self.every = sample_every(steps_per_epoch, log.stats_every)
        self.last_sampled = (steps_per_epoch // self.every) * self.every - 1
        self._select_layers()
        self.activations = representative(activation_modules(model))
        classes = activation_classes()
        # each activation layer's registry traits: its family (dead units) and saturation bounds
        self.activation_traits = {
            name: ACTIVATIONS.traits(activation_name(module, classes))
            for name, module in self.activations.items()
        }
        self.enabled = (writer.stats or self.histograms) and any(
            isinstance(module, WEIGHT_LAYERS) for module in model.modules()
        )
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.sampling = False
        self._new_epoch()
        if example is not None:
            writer.log_graph(model, example)

    def _select_layers(self) -> None:
        """The weight layers that train now (a representative set of them). Fine-tuning unfreezes a pretrained
        body during the run, so this is chosen again at the start of each epoch: from then on the record holds
        the body's layers too, not only the head that trained first."""
        self.layers = representative(
            {
                name: module
                for name, module in self.model.named_modules()
                if isinstance(module, WEIGHT_LAYERS) and module.weight.requires_grad
            }
        )
        self.first_conv = next(
            (name for name, module in self.layers.items() if isinstance(module, nn.Conv2d)), None
        )

    def _new_epoch(self) -> None:
        self.samples: list[list[float]] = []  # one flat list of numbers per sampled step
        self.ever_active: dict[str, torch.Tensor] = {}
        self.activation_values: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}

    # --- named points of the training step ----------------------------------------------------------------

    def before_forward(self, step: int) -> None:
        """On a sampled step, attach the activation hooks for this one forward pass."""
        if not self.enabled or (step + 1) % self.every:
            return
        if not self.samples:  # the epoch's first sample: what trains may have changed since the last epoch
            self._select_layers()
        if not self.layers:
            return
        self.sampling = True
        self.capture = step == self.last_sampled  # the epoch's histograms come from its last sampled step
        self.pending: dict[str, torch.Tensor] = {}
        self.hooks = [
            module.register_forward_hook(self._activation_hook(name))
            for name, module in self.activations.items()
        ]

    def _activation_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._measure_activation(name, module, output)

        return hook

    def _measure_activation(self, name: str, module: nn.Module, output: torch.Tensor) -> None:
        out = output.detach().float()
        # Sums rather than torch.std_mean, which is ten times slower on CPU; mean and std follow on the host.
        count = torch.tensor(float(out.numel()), device=out.device)
        values = [out.sum(), out.square().sum(), count, *torch.aminmax(out)]
        traits = self.activation_traits[name]
        if traits.family == "relu":
            # A unit is a feature of a dense layer, or a whole channel of a conv layer; active if ever > 0.
            active = out.amax(dim=0).reshape(out.shape[1], -1).amax(dim=1) > 0
            seen = self.ever_active.get(name)
            self.ever_active[name] = active if seen is None else seen | active
        bounds = traits.saturation
        if bounds is not None:
            values.append(((out <= bounds[0]) | (out >= bounds[1])).float().mean())
        self.pending[name] = torch.stack(values)
        if self.capture:
            flat = out.flatten()
            self.activation_values[name] = flat[:: max(1, flat.numel() // HISTOGRAM_VALUES)].clone()

    def after_backward(self, step: int) -> None:
        """On a sampled step: detach the hooks, measure the raw gradients, remember the weights."""
        if not self.sampling:
            return
        for handle in self.hooks:
            handle.remove()
        self.hooks = []
        weights = [module.weight for module in self.layers.values()]
        grads = [weight.grad if weight.grad is not None else torch.zeros_like(weight) for weight in weights]
        self.grad_norms = _norms(grads)
        all_grads = [param.grad for param in self.model.parameters() if param.grad is not None]
        self.global_norm = torch.linalg.vector_norm(_norms(all_grads))
        self.before = [weight.detach().clone() for weight in weights]
        if self.capture and self.histograms:
            for name, module in self.layers.items():
                if module.weight.grad is not None:
                    self.gradients[name] = module.weight.grad.detach().clone()

    def after_step(self, step: int) -> None:
        """On a sampled step: measure the update the optimiser made, then read every number at once."""
        if not self.sampling:
            return
        self.sampling = False
        weights = [module.weight.detach() for module in self.layers.values()]
        before_norms = _norms(self.before)
        update_norms = _norms(torch._foreach_sub(weights, self.before))
        weight_norms = _norms(weights)
        ratios = update_norms / before_norms.clamp_min(1e-30)
        parts = [self.grad_norms, weight_norms, ratios, self.global_norm[None], *self.pending.values()]
        self.samples.append(torch.cat(parts).tolist())  # the one host sync of a sampled step
        self.activation_shapes = [len(values) for values in self.pending.values()]
        self.activation_names = list(self.pending)
        self.before = []

    # --- end of an epoch --------------------------------------------------------------------------------

    def end_epoch(self, epoch: int, data: Any = None) -> None:
        """Write the epoch's statistics, histograms and filter image, and evaluate the custom metrics."""
        if self.samples:
            self.writer.log_stats(self._records(epoch))
        if self.histograms:
            self.writer.log_histograms(epoch, self._histogram_tensors())
        if self.first_conv is not None and self.writer.tensorboard:
            weight = self.layers[self.first_conv].weight
            self.writer.log_image(epoch, f"filters/{self.first_conv}", filter_grid(weight))
        if self.metrics:
            self.writer.log_stats(
                [
                    {"epoch": epoch, "kind": "custom", "name": name, "value": value}
                    for name, value in self.evaluate_metrics(data).items()
                ]
            )
        self._new_epoch()

    def abort(self, epoch: int) -> None:
        """Keep the statistics an unfinished epoch sampled (marked `partial`), and detach any hook."""
        for handle in self.hooks:
            handle.remove()
        self.hooks = []
        if self.samples:
            self.writer.log_stats([{**record, "partial": True} for record in self._records(epoch)])
        self._new_epoch()

    def evaluate_metrics(self, data: Any) -> dict[str, float]:
        """Return {name: value} of the custom metrics, each called as fn(model, data) in inference mode."""
        modes = {module: module.training for module in self.model.modules()}
        self.model.eval()
        try:
            with torch.no_grad():
                return {name: float(metric(self.model, data)) for name, metric in self.metrics.items()}
        finally:
            for module, training in modes.items():
                module.training = training

    def _records(self, epoch: int) -> list[dict[str, Any]]:
        samples = np.array(self.samples, dtype=float)  # sampled steps × numbers
        count = len(self.layers)
        grads, weights, ratios = (
            samples[:, :count],
            samples[:, count : 2 * count],
            samples[:, 2 * count : 3 * count],
        )
        records: list[dict[str, Any]] = [
            {
                "epoch": epoch,
                "kind": "model",
                "grad_norm": _mean(samples[:, 3 * count]),
                "grad_norm_max": _max(samples[:, 3 * count]),
                "samples": len(samples),
                "every": self.every,
            }
        ]
        for index, (name, module) in enumerate(self.layers.items()):
            records.append(
                {
                    "epoch": epoch,
                    "kind": "layer",
                    "layer": name,
                    "type": type(module).__name__,
                    "params": module.weight.numel(),
                    "grad_norm": _mean(grads[:, index]),
                    "grad_norm_max": _max(grads[:, index]),
                    "weight_norm": _clean(weights[-1, index]),
                    "update_ratio": _mean(ratios[:, index]),
                }
            )
        offset = 3 * count + 1
        for name, size in zip(self.activation_names, self.activation_shapes):
            values = samples[:, offset : offset + size]
            offset += size
            total, squares, count = values[:, 0], values[:, 1], values[:, 2]
            means = total / count
            variances = np.maximum(squares / count - means**2, 0.0) * count / np.maximum(count - 1, 1)
            module = self.activations[name]
            record = {
                "epoch": epoch,
                "kind": "activation",
                "layer": name,
                "type": type(module).__name__,
                "mean": _mean(means),
                "std": _mean(np.sqrt(variances)),
                "min": _clean(np.min(values[:, 3])),
                "max": _clean(np.max(values[:, 4])),
                "dead": None,
                "saturated": _mean(values[:, 5]) if size > 5 else None,
                "saturation": self.activation_traits[name].saturation,  # the registry's bounds, or None
            }
            if name in self.ever_active:
                record["dead"] = 1.0 - self.ever_active[name].float().mean().item()
            if name in self.activation_values:
                record["hist"] = _histogram(self.activation_values[name])
            records.append(record)
        return records

    def _histogram_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.layers.items():
            tensors[f"weights/{name}"] = module.weight
            if module.bias is not None:
                tensors[f"biases/{name}"] = module.bias
            if name in self.gradients:
                tensors[f"gradients/{name}"] = self.gradients[name]
        for name, values in self.activation_values.items():
            tensors[f"activations/{name}"] = values
        return tensors


def _norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of each tensor, as one float32 vector on their device.

    `torch._foreach_norm` (what `clip_grad_norm_` uses) computes them in one call instead of one per tensor.
    """
    return torch.stack(torch._foreach_norm([tensor.detach() for tensor in tensors])).float()


def _clean(value: float) -> float | None:
    """A JSON-safe number: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: np.ndarray) -> float | None:
    return _clean(np.mean(values))


def _max(values: np.ndarray) -> float | None:
    return _clean(np.max(values))


def _histogram(values: torch.Tensor) -> dict[str, Any] | None:
    """{lo, hi, counts, zeros} of the finite values in HISTOGRAM_BINS equal bins.

    Exact zeros (half of a ReLU layer's outputs, typically) are counted apart as the fraction `zeros`, and
    the bins hold the other values, so the spike at zero does not flatten the rest of the distribution.
    """
    values = values.cpu().double().numpy()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    zeros = float(np.mean(values == 0))
    rest = values[values != 0]
    if rest.size == 0:
        return {"lo": 0.0, "hi": 0.0, "counts": [], "zeros": zeros}
    low, high = float(rest.min()), float(rest.max())
    if high - low <= 1e-9 * max(abs(low), abs(high), 1.0):  # one value: a narrow bin around it
        width = 1e-3 * max(abs(low), 1e-3)
        low, high = low - width, high + width
    try:
        counts, _ = np.histogram(rest, bins=HISTOGRAM_BINS, range=(low, high))
    except ValueError:  # values of a diverging run can span a range numpy cannot cut into bins
        return None
    return {"lo": low, "hi": high, "counts": counts.tolist(), "zeros": zeros}
