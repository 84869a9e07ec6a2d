"""Weight initialisation: a name -> initialiser table, applied to dense and conv layers only.

Norm layers keep PyTorch's weight 1 / bias 0 and PReLU keeps its slopes: the seed experiments (Xavier vs He
vs normal(0.01) vs zeros) are about the weights of the affine and conv layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kaizen.config import InitConfig
from kaizen.registry import INITS

# The layers whose weights and biases an init touches.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


@INITS.register("default")
def _default(weight: torch.Tensor, cfg: InitConfig) -> None:
    """Keep PyTorch's own initialisation (Kaiming uniform with a=sqrt(5))."""


@INITS.register("normal")
def _normal(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.normal_(weight, 0.0, cfg.std)


@INITS.register("zeros")
def _zeros(weight: torch.Tensor, cfg: InitConfig) -> None:
    # The anti-pattern of seed 002: every unit in a layer stays identical, so the network cannot learn.
    nn.init.zeros_(weight)


@INITS.register("xavier_uniform")
def _xavier_uniform(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.xavier_uniform_(weight)


@INITS.register("xavier_normal")
def _xavier_normal(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.xavier_normal_(weight)


@INITS.register("he_normal")
def _he_normal(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


@INITS.register("he_uniform")
def _he_uniform(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.kaiming_uniform_(weight, mode="fan_in", nonlinearity="relu")


@INITS.register("orthogonal")
def _orthogonal(weight: torch.Tensor, cfg: InitConfig) -> None:
    nn.init.orthogonal_(weight)


@INITS.register("lecun_normal")
def _lecun_normal(weight: torch.Tensor, cfg: InitConfig) -> None:
    fan_in = weight[0].numel()  # inputs per output unit: in_features, or in_channels × kernel area
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))


def apply_init(model: nn.Module, init_cfg: InitConfig) -> nn.Module:
    """Initialise the weights (and, if `init_cfg.bias` is set, the biases) of every dense and conv layer.

    Returns `model`, changed in place.
    """
    initialise = INITS.get(init_cfg.weights)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, WEIGHT_LAYERS):
                continue
            initialise(module.weight, init_cfg)
            if init_cfg.bias is not None and module.bias is not None:
                nn.init.constant_(module.bias, init_cfg.bias)
    return model
