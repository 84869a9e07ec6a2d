"""Activations, norms and the residual block: small name -> builder tables (timm-style).

Every builder takes keyword arguments only and ignores the ones it does not need, so callers can pass the same
context (`channels`, `spatial`, `slope`, `groups`) to any name: `create_activation("prelu", channels=32)`.
An activation's entry carries its family and saturation bounds (see kaizen.registry.ACTIVATIONS); the module
class it builds is how the statistics recorder, the sparsity penalty and unfreezing recognise it in a model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from kaizen.config import ModelConfig
from kaizen.errors import KaizenError
from kaizen.registry import ACTIVATIONS, NORMS

# ------------------------------------------------------------------------------------------ activations


@ACTIVATIONS.register("sigmoid", family="squashing", saturation=(0.01, 0.99))
def _sigmoid(**_: object) -> nn.Module:
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh", family="squashing", saturation=(-0.99, 0.99))
def _tanh(**_: object) -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register("relu", family="relu", saturation=None)
def _relu(**_: object) -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu", family="relu", saturation=None)
def _leaky_relu(*, slope: float = 0.01, **_: object) -> nn.Module:
    return nn.LeakyReLU(slope)


@ACTIVATIONS.register("prelu", family="relu", saturation=None)
def _prelu(*, channels: int = 1, **_: object) -> nn.Module:
    # One learnable slope per channel (per feature on flat inputs), as in He et al. 2015.
    return nn.PReLU(num_parameters=channels)


@ACTIVATIONS.register("elu", family="relu", saturation=None)
def _elu(**_: object) -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register("gelu", family="smooth", saturation=None)
def _gelu(**_: object) -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register("silu", family="smooth", saturation=None)
def _silu(**_: object) -> nn.Module:
    return nn.SiLU()


def activation_classes() -> dict[type[nn.Module], str]:
    """Return {module class: activation name} of every registered activation (how a model's are recognised)."""
    return {type(ACTIVATIONS.create(name)): name for name in ACTIVATIONS.names()}


def activation_name(module: nn.Module, classes: dict[type[nn.Module], str] | None = None) -> str | None:
    """Return the registered name of the activation `module` is (None if it is none); `classes` caches
    `activation_classes()`."""
    for cls, name in (classes or activation_classes()).items():
        if isinstance(module, cls):
            return name
    return None


def create_activation(name: str, *, channels: int = 1, slope: float = 0.01) -> nn.Module:
    """Return a new activation module registered under `name` (slope: leaky_relu; channels: prelu)."""
    return ACTIVATIONS.create(name, channels=channels, slope=slope)


# ------------------------------------------------------------------------------------------------ norms


@NORMS.register("none")
def _no_norm(**_: object) -> nn.Module:
    return nn.Identity()


@NORMS.register("batch")
def _batch_norm(*, channels: int, spatial: bool, **_: object) -> nn.Module:
    return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)


@NORMS.register("layer")
def _layer_norm(*, channels: int, spatial: bool, **_: object) -> nn.Module:
    # On feature maps, normalise each sample over C, H and W together (one group of all channels).
    return nn.GroupNorm(1, channels) if spatial else nn.LayerNorm(channels)


@NORMS.register("instance")
def _instance_norm(*, channels: int, spatial: bool, **_: object) -> nn.Module:
    if not spatial:
        raise KaizenError(
            "instance norm needs N×C×H×W feature maps, not flat features; use batch, layer or group norm here"
        )
    return nn.InstanceNorm2d(channels, affine=True)


@NORMS.register("group")
def _group_norm(*, channels: int, groups: int = 8, **_: object) -> nn.Module:
    return nn.GroupNorm(group_count(channels, groups), channels)


def group_count(channels: int, groups: int) -> int:
    """Return the largest divisor of `channels` that is at most `groups` (GroupNorm needs an exact split)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def create_norm(kind: str, *, channels: int, spatial: bool, groups: int = 8) -> nn.Module:
    """Return a new norm module: `spatial` is True for N×C×H×W inputs, False for N×F."""
    return NORMS.create(kind, channels=channels, spatial=spatial, groups=groups)


# ---------------------------------------------------------------------------------------- residual block


class ResidualBlock(nn.Module):
    """Two 3×3 convs plus a shortcut, with norm and activation taken from the model switches.

    norm_position 'before': conv1-norm1-act1-conv2-norm2, add, act2 (the classic ResNet block).
    norm_position 'after':  conv1-act1-norm1-conv2, add, act2-norm2.
    The shortcut is a 1×1 conv (plus norm) when the stride or the channel count changes, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, model: ModelConfig):
        super().__init__()
        self.norm_first = model.norm_position == "before"

        def norm() -> nn.Module:
            return create_norm(model.norm, channels=out_channels, spatial=True, groups=model.groups)

        def act() -> nn.Module:
            return create_activation(model.activation, channels=out_channels, slope=model.leaky_slope)

        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm1 = norm()
        self.act1 = act()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = norm()
        self.act2 = act()
        if stride != 1 or in_channels != out_channels:
            projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride)
            self.shortcut = nn.Sequential(OrderedDict(conv=projection, norm=norm()))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
            return self.act2(out + self.shortcut(x))
        out = self.conv2(self.norm1(self.act1(self.conv1(x))))
        return self.norm2(self.act2(out + self.shortcut(x)))


class GlobalPool(nn.Module):
    """Average or max over H and W: N×C×H×W -> N×C."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
