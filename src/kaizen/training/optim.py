"""Optimisers by name, with weight decay on weights only (never on biases or norm parameters)."""

from __future__ import annotations

import torch
from torch import nn

from kaizen.config import OptimConfig
from kaizen.registry import OPTIMIZERS


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr)


@OPTIMIZERS.register("momentum")
def _momentum(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("nesterov")
def _nesterov(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


@OPTIMIZERS.register("adagrad")
def _adagrad(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(groups, lr=cfg.lr, eps=cfg.eps)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, lr=cfg.lr, eps=cfg.eps)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Return the optimiser named by `cfg.name` with two parameter groups: weights (decayed) and the rest.

    Weight decay is coupled (added to the gradient) for every optimiser but adamw, where it is decoupled.
    Either way it is separate from the L1/L2 loss penalties of `reg`.
    """
    from kaizen.nn import split_parameters

    weights, others = split_parameters(model)
    groups = [
        {
            "params": [p for p in weights if p.requires_grad],
            "weight_decay": cfg.weight_decay,
            "name": "weights",
        },
        {"params": [p for p in others if p.requires_grad], "weight_decay": 0.0, "name": "biases_and_norms"},
    ]
    return OPTIMIZERS.create(cfg.name, [group for group in groups if group["params"]], cfg)
