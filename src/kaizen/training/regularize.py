"""Loss penalties: L1 / L2 / elastic net on weights (not biases), and activation sparsity.

These are terms added to the loss, unlike decoupled weight decay, which the optimiser applies.
"""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from kaizen.config import RegConfig
from kaizen.errors import KaizenError


class Penalties:
    """Computes the penalty term of one step. `None` from `term()` when no penalty is switched on."""

    def __init__(self, model: nn.Module, cfg: RegConfig):
        from kaizen.nn import activation_modules, split_parameters

        self.cfg = cfg
        self.weights = [p for p in split_parameters(model)[0] if p.requires_grad]
        self.activations: list[torch.Tensor] = []
        self.hooks = []
        if cfg.activation_sparsity > 0:
            candidates = activation_modules(model)
            chosen = {
                name: module
                for name, module in candidates.items()
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in cfg.sparsity_layers)
            }
            if not chosen:
                raise KaizenError(
                    f"reg.sparsity_layers {cfg.sparsity_layers} match no activation layer; "
                    f"activation layers: {', '.join(candidates) or 'none'}"
                )
            self.hooks = [module.register_forward_hook(self._keep) for module in chosen.values()]

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            self.activations.append(output)

    def term(self) -> torch.Tensor | None:
        """The penalty for the forward pass just made (and forget its activations)."""
        total = None
        if self.cfg.l1 > 0:
            total = _add(total, self.cfg.l1 * sum(w.abs().sum() for w in self.weights))
        if self.cfg.l2 > 0:
            total = _add(total, self.cfg.l2 * sum(w.pow(2).sum() for w in self.weights))
        if self.activations:
            sparsity = sum(torch.log1p(h.float().pow(2)).mean() for h in self.activations)
            total = _add(total, self.cfg.activation_sparsity * sparsity)
            self.activations = []
        return total

    def remove(self) -> None:
        """Detach the activation hooks."""
        for hook in self.hooks:
            hook.remove()


def _add(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    return term if total is None else total + term
