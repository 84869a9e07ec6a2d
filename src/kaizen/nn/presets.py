"""Named architectures from the seed experiments, each written as a layer-spec list for the one builder.

Every preset applies the global switches: model.activation (every hidden activation), model.norm with
model.norm_position ('before': conv/dense -> norm -> act; 'after': conv/dense -> act -> norm) and model.dropout
(a dropout before each dense layer fed by a hidden dense layer or by global pooling, i.e. before `head` and
between hidden dense layers; 0 adds no dropout child). They adapt to small inputs (1×8×8 digits) by switching
a conv to 'same' padding where the seed's padding would leave maps smaller than the kernel, and by skipping a
pool once maps are 1×1; to large inputs (up to 128×128 and beyond, 1 or 3 channels) by max-pooling before the
flatten down to MAX_FLAT features. On the seeds' own input sizes they keep the seeds' shapes exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from kaizen.config import (
    ActivationLayer,
    ConvLayer,
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
from kaizen.nn.builder import build_layers, check_input_shape
from kaizen.registry import PRESETS

# The most features a preset flattens into its first dense layer: vgg_small's 128 x 8 x 8 on 64 x 64 inputs
# (the auto image size's cap). The seeds' own inputs stay below it (conv_net on 28 x 28: 4,320), so their
# shapes are unchanged; on 128 x 128, kaggle_cnn has 1.7M parameters instead of 27.6M, conv_net 0.68M, not 11.5M.
MAX_FLAT = 8192

SpecMaker = Callable[[ModelConfig, tuple[int, int, int]], list[LayerSpec]]
_SPEC_MAKERS: dict[str, SpecMaker] = {}


def preset(name: str) -> Callable[[SpecMaker], SpecMaker]:
    """Decorator: register a function returning a preset's layer specs as the preset builder `name`."""

    def register(make_specs: SpecMaker) -> SpecMaker:
        def build(model: ModelConfig, input_shape: Sequence[int], num_classes: int) -> nn.Sequential:
            shape = check_input_shape(input_shape)
            return build_layers(make_specs(model, shape), model, shape, num_classes, source=f"preset {name}")

        build.__doc__ = make_specs.__doc__
        _SPEC_MAKERS[name] = make_specs
        PRESETS.register(name)(build)
        return make_specs

    return register


def preset_layers(name: str, model: ModelConfig, input_shape: Sequence[int]) -> list[LayerSpec]:
    """Return the body layer specs that preset `name` builds for this model config and input shape."""
    PRESETS.check(name)
    return _SPEC_MAKERS[name](model, check_input_shape(input_shape))


class _Stack:
    """Collects a preset's layer specs, applying the model switches and tracking the map size."""

    def __init__(self, model: ModelConfig, input_shape: tuple[int, int, int]):
        self.model = model
        self.channels, self.height, self.width = input_shape
        self.specs: list[LayerSpec] = []
        self.flat = False

    @property
    def size(self) -> int:
        """The smaller side of the maps: it decides whether a conv or pool still fits."""
        return min(self.height, self.width)

    def norm(self) -> None:
        # Instance norm normalises feature maps; a CNN preset's dense layers go without it. A preset with no
        # feature maps at all (mlp) still asks for it, so the builder says why it cannot be done.
        has_maps = any(spec.type in ("conv", "residual") for spec in self.specs)
        if self.flat and self.model.norm == "instance" and has_maps:
            return
        self.specs.append(NormLayer(type="norm"))  # kind None -> model.norm; 'none' adds no child

    def act(self) -> None:
        self.specs.append(ActivationLayer(type="activation"))  # name None -> model.activation

    def norm_act(self) -> None:
        if self.model.norm_position == "before":
            self.norm()
            self.act()
        else:
            self.act()
            self.norm()

    def conv(self, filters: int, kernel: int = 3, padding: int | str = "same", block: bool = True) -> None:
        """A conv with the seed's padding where it leaves maps at least kernel-sized, else 'same'."""
        if padding != "same":
            if self.size + 2 * padding - kernel + 1 < kernel:
                padding = "same"
            else:
                self.height += 2 * padding - kernel + 1
                self.width += 2 * padding - kernel + 1
        self.channels = filters
        self.specs.append(ConvLayer(type="conv", filters=filters, kernel=kernel, padding=padding))
        if block:
            self.norm_act()

    def pool(self, kind: str = "max") -> None:
        if self.size >= 2:
            self.specs.append(PoolLayer(type="pool", kind=kind))
            self.height //= 2
            self.width //= 2

    def residual(self, filters: int, stride: int = 1) -> None:
        self.specs.append(ResidualLayer(type="residual", filters=filters, stride=stride))
        self.height = (self.height - 1) // stride + 1
        self.width = (self.width - 1) // stride + 1
        self.channels = filters

    def flatten(self) -> None:
        """Flatten the maps; larger inputs than the seeds' are max-pooled first down to MAX_FLAT features."""
        has_maps = any(spec.type in ("conv", "residual") for spec in self.specs)  # an MLP flattens its input
        while has_maps and self.channels * self.height * self.width > MAX_FLAT and self.size >= 2:
            self.pool()
        self.specs.append(FlattenLayer(type="flatten"))
        self.flat = True

    def global_pool(self) -> None:
        self.specs.append(GlobalPoolLayer(type="global_pool"))
        self.flat = True

    def dense(self, units: int, block: bool = True) -> None:
        self.specs.append(DenseLayer(type="dense", units=units))
        if block:
            self.norm_act()

    def dropout(self) -> None:
        self.specs.append(DropoutLayer(type="dropout"))  # rate None -> model.dropout; 0 adds no child

    def hidden_dense(self, widths: Sequence[int]) -> None:
        """Hidden dense layers of a classifier, each followed by dropout (so dropout precedes the next dense)."""
        for units in widths:
            self.dense(units)
            self.dropout()


@preset("mlp")
def mlp(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """Flatten, then dense layers of widths model.hidden (seed 003: 784-40-20-10)."""
    stack = _Stack(model, input_shape)
    stack.flatten()
    stack.hidden_dense(model.hidden)
    return stack.specs


@preset("simple_cnn")
def simple_cnn(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """Seed 002: conv 4@5×5 - pool - conv 10@5×5 - pool - flatten (160 on 28×28) - dense 40 - classes."""
    stack = _Stack(model, input_shape)
    stack.conv(4, kernel=5, padding=0)
    stack.pool()
    stack.conv(10, kernel=5, padding=0)
    stack.pool()
    stack.flatten()
    stack.hidden_dense([40])
    return stack.specs


@preset("lenet5")
def lenet5(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """LeNet-5 (seed 001): conv 6@5×5 - avg pool - conv 16@5×5 - avg pool - dense 120 - dense 84 - classes.

    Below 32×32 the first conv pads by 2, as the classic MNIST version does (28×28 -> 28×28).
    """
    stack = _Stack(model, input_shape)
    stack.conv(6, kernel=5, padding=0 if stack.size >= 32 else 2)
    stack.pool("avg")  # LeNet's "subsampling"
    stack.conv(16, kernel=5, padding=0)
    stack.pool("avg")
    stack.flatten()
    stack.hidden_dense([120, 84])
    return stack.specs


@preset("conv_net")
def conv_net(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """Seed 003's SimpleConvNet: conv 30@5×5 - act - pool - dense 100 - act - classes."""
    stack = _Stack(model, input_shape)
    stack.conv(30, kernel=5, padding=0)
    stack.pool()
    stack.flatten()
    stack.hidden_dense([100])
    return stack.specs


@preset("kaggle_cnn")
def kaggle_cnn(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """Seed 004's BN + dropout CNN: conv 32,32 - pool - conv 64,64 - pool - dense 512 - dropout - classes.

    With norm_position 'after' this is the seed's layout: each norm follows the activation and, where there
    is one, the pool; the last conv block's norm acts on the flattened features (1024 on 28×28).
    """
    stack = _Stack(model, input_shape)
    if model.norm_position == "before":
        stack.conv(32, padding=0)
        stack.conv(32, padding=0)
        stack.pool()
        stack.conv(64, padding=0)
        stack.conv(64, padding=0)
        stack.pool()
        stack.flatten()
        stack.dense(512)
    else:
        stack.conv(32, padding=0, block=False)
        stack.act()
        stack.norm()
        stack.conv(32, padding=0, block=False)
        stack.act()
        stack.pool()
        stack.norm()
        stack.conv(64, padding=0, block=False)
        stack.act()
        stack.norm()
        stack.conv(64, padding=0, block=False)
        stack.act()
        stack.pool()
        stack.flatten()
        stack.norm()
        stack.dense(512, block=False)
        stack.act()
        stack.norm()
    stack.dropout()
    return stack.specs


@preset("vgg_small")
def vgg_small(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """A small VGG: three blocks of two 3×3 'same' convs (32, 64, 128) and a pool, then dense 256."""
    stack = _Stack(model, input_shape)
    for filters in (32, 64, 128):
        stack.conv(filters)
        stack.conv(filters)
        stack.pool()
    stack.flatten()
    stack.hidden_dense([256])
    return stack.specs


@preset("resnet_small")
def resnet_small(model: ModelConfig, input_shape: tuple[int, int, int]) -> list[LayerSpec]:
    """A small ResNet: a 3×3 stem of 16, residual blocks 16, 32/2, 64/2, global average pool."""
    stack = _Stack(model, input_shape)
    stack.conv(16)
    stack.residual(16)
    stack.residual(32, stride=2)
    stack.residual(64, stride=2)
    stack.global_pool()
    stack.dropout()
    return stack.specs
