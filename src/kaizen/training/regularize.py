"""Loss penalties: L1 / L2 / elastic net on weights (not biases), and activation sparsity.

These are terms added to the loss, unlike decoupled weight decay, which the optimiser applies.
"""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from kaizen.config import RegConfig
from kaizen.errors import KaizenError
from kaizen.nn import activation_modules, split_parameters


class Penalties:
    """Computes the penalty term of one step. `None` from `term()` when no penalty is switched on.

    L1/L2 apply to the weights that train at that step: those that gradual unfreezing releases later are
    penalised from then on, and frozen ones never.
    """

    def __init__(self, model: nn.Module, cfg: RegConfig):
        self.cfg = cfg
        self.weights = split_parameters(model)[0]
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
        training = [weight for weight in self.weights if weight.requires_grad]  # at this step
        if self.cfg.l1 > 0:
            total = _add(total, self.cfg.l1 * sum(w.abs().sum() for w in training))
        if self.cfg.l2 > 0:
            total = _add(total, self.cfg.l2 * sum(w.pow(2).sum() for w in training))
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
