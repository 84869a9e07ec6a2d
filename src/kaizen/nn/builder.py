"""Build an `nn.Sequential` of named children from a Keras-like list of layer specs.

The list is the body; kaizen appends the classifier (`flatten` if the body ends in feature maps, then `head`,
a Linear to the classes). Children are named per kind and numbered in order (`conv1`, `norm1`, `act1`, `pool1`,
`drop1`, `fc1`, `res1`, `deconv1`, `flatten`, `gpool`), so transfer patterns and statistics can name them.
The shape is tracked as layers are added, so a bad list fails at build time with the layer index and shape.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from torch import nn

from kaizen.config import (
    ActivationLayer,
    ConvLayer,
    ConvTransposeLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalPoolLayer,
    LayerSpec,
    ModelConfig,
    NormLayer,
    PoolLayer,
    ResidualLayer,
)
from kaizen.errors import KaizenError
from kaizen.nn.layers import GlobalPool, ResidualBlock, create_activation, create_norm

Shape = tuple[int, ...]  # per sample: (C, H, W) for feature maps, (F,) for flat features

# Kinds whose first child keeps the bare name (`flatten`, `gpool`); all others are numbered from 1.
_UNNUMBERED = ("flatten", "gpool")


def format_shape(shape: Shape) -> str:
    """Return a shape as text: '32×26×26' for feature maps, '160 features' for flat ones."""
    return "×".join(map(str, shape)) if len(shape) == 3 else f"{shape[0]} features"


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """Return `input_shape` as a (C, H, W) tuple, or raise a KaizenError if it is not one."""
    shape = tuple(int(size) for size in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise KaizenError(f"input shape must be (channels, height, width) of positive sizes, got {shape}")
    return shape


class _Builder:
    """Appends named children to a Sequential while tracking the per-sample shape."""

    def __init__(self, model: ModelConfig, input_shape: Shape):
        self.model = model
        self.shape = input_shape
        self.net = nn.Sequential()
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, module: nn.Module, shape: Shape) -> None:
        self.counts[kind] += 1
        n = self.counts[kind]
        name = kind if kind in _UNNUMBERED and n == 1 else f"{kind}{n}"
        self.net.add_module(name, module)
        self.shape = shape

    def maps(self, what: str) -> tuple[int, int, int]:
        """The current shape, which must be feature maps for `what`."""
        if len(self.shape) != 3:
            raise KaizenError(f"{what} needs N×C×H×W feature maps; put it before flatten/global_pool")
        channels, height, width = self.shape
        return channels, height, width

    def add_activation(self, name: str | None) -> None:
        name = name or self.model.activation
        module = create_activation(name, channels=self.shape[0], slope=self.model.leaky_slope)
        self.add("act", module, self.shape)

    # One method per spec type; each raises KaizenError with the reason, `build_layers` adds where.

    def dense(self, spec: DenseLayer) -> None:
        if len(self.shape) != 1:
            raise KaizenError("dense needs flat features; add 'flatten' or 'global_pool' before it")
        self.add("fc", nn.Linear(self.shape[0], spec.units), (spec.units,))
        if spec.activation:
            self.add_activation(spec.activation)

    def conv(self, spec: ConvLayer) -> None:
        channels, height, width = self.maps("conv")
        k, s, d = spec.kernel, spec.stride, spec.dilation
        if spec.padding == "same":
            # PyTorch's exact 'same' works at stride 1 only; above it, symmetric padding keeps ceil(size / s).
            padding: int | str = "same" if s == 1 else d * (k - 1) // 2
            out = (height, width) if s == 1 else _conv_out((height, width), k, s, padding, d)
        else:
            padding = spec.padding
            out = _conv_out((height, width), k, s, padding, d)
        if min(out) < 1:
            raise KaizenError(
                f"a {k}×{k} conv (dilation {d}, padding {padding}) does not fit; try padding: same"
            )
        module = nn.Conv2d(channels, spec.filters, k, stride=s, padding=padding, dilation=d)
        self.add("conv", module, (spec.filters, *out))
        if spec.activation:
            self.add_activation(spec.activation)

    def conv_transpose(self, spec: ConvTransposeLayer) -> None:
        channels, height, width = self.maps("conv_transpose")
        k, s, p, extra = spec.kernel, spec.stride, spec.padding, spec.output_padding
        if extra >= s:
            raise KaizenError(f"output_padding ({extra}) must be smaller than stride ({s})")
        out = tuple((size - 1) * s - 2 * p + k + extra for size in (height, width))
        if min(out) < 1:
            raise KaizenError(f"padding {p} leaves no output; lower it")
        module = nn.ConvTranspose2d(channels, spec.filters, k, stride=s, padding=p, output_padding=extra)
        self.add("deconv", module, (spec.filters, *out))
        if spec.activation:
            self.add_activation(spec.activation)

    def pool(self, spec: PoolLayer) -> None:
        channels, height, width = self.maps("pool")
        size, stride = spec.size, spec.stride or spec.size
        if min(height, width) < size:
            raise KaizenError(
                f"a {size}×{size} pool would shrink the maps below 1×1; remove it or lower size"
            )
        out = (channels, (height - size) // stride + 1, (width - size) // stride + 1)
        modules: dict[str, Callable[[], nn.Module]] = {
            "max": lambda: nn.MaxPool2d(size, stride),
            "avg": lambda: nn.AvgPool2d(size, stride),
            "lp": lambda: nn.LPPool2d(spec.p, size, stride),
        }
        self.add("pool", modules[spec.kind](), out)

    def global_pool(self, spec: GlobalPoolLayer) -> None:
        channels, _, _ = self.maps("global_pool")
        self.add("gpool", GlobalPool(spec.kind), (channels,))

    def flatten(self, spec: FlattenLayer) -> None:
        self.add("flatten", nn.Flatten(), (math.prod(self.shape),))

    def dropout(self, spec: DropoutLayer) -> None:
        rate = self.model.dropout if spec.rate is None else spec.rate
        if rate > 0:  # rate 0 adds no child at all, so "no dropout" leaves no trace in the model
            self.add("drop", nn.Dropout(rate), self.shape)

    def norm(self, spec: NormLayer) -> None:
        kind = spec.kind or self.model.norm
        if kind != "none":
            spatial = len(self.shape) == 3
            module = create_norm(kind, channels=self.shape[0], spatial=spatial, groups=self.model.groups)
            self.add("norm", module, self.shape)

    def activation(self, spec: ActivationLayer) -> None:
        self.add_activation(spec.name)

    def residual(self, spec: ResidualLayer) -> None:
        channels, height, width = self.maps("residual")
        out = _conv_out((height, width), 3, spec.stride, 1, 1)
        self.add("res", ResidualBlock(channels, spec.filters, spec.stride, self.model), (spec.filters, *out))

    def head(self, num_classes: int) -> None:
        if len(self.shape) == 3:
            self.flatten(FlattenLayer(type="flatten"))
        self.net.add_module("head", nn.Linear(self.shape[0], num_classes))
        self.shape = (num_classes,)


def _conv_out(
    size: tuple[int, int], kernel: int, stride: int, padding: int, dilation: int
) -> tuple[int, int]:
    """Output (height, width) of a convolution (PyTorch's formula, no 'same')."""
    height, width = ((n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for n in size)
    return height, width


def build_layers(
    layers: Sequence[LayerSpec],
    model: ModelConfig,
    input_shape: Sequence[int],
    num_classes: int,
    source: str = "model.layers",
) -> nn.Sequential:
    """Return the body built from `layers` followed by the classifier (`flatten` if needed, then `head`).

    Defaults come from `model`: dropout rate None -> model.dropout, norm kind None -> model.norm, activation
    name None -> model.activation. A layer that does not fit the incoming shape raises a KaizenError naming
    `source[index]`, the layer type and the shape.
    """
    builder = _Builder(model, check_input_shape(input_shape))
    for index, spec in enumerate(layers):
        shape = builder.shape
        try:
            getattr(builder, spec.type)(spec)
        except KaizenError as error:
            raise KaizenError(
                f"{source}[{index}] ({spec.type}) on input {format_shape(shape)}: {error}"
            ) from None
    if num_classes < 1:
        raise KaizenError(f"the classifier needs at least 1 class, got {num_classes}")
    builder.head(num_classes)
    return builder.net
