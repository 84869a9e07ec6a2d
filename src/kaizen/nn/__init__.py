"""Models from config: presets or a layer list, initialised, plus the views of a model the trainer needs.

`build_model` is the one builder of a whole network: the trunk (a preset or a layer list), initialised, plus
the heads of its extra tasks (`model.tasks`); training, `kaizen summary`, `kaizen inspect` and a run's saved
model all come from it. `activation_modules` names the activation layers (for the activation
sparsity penalty and the statistics recorder); `split_parameters` separates conv/dense weights from biases
and norm parameters (L1/L2 penalties apply to weights only; weight decay skips the rest).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from kaizen.config import InitConfig, ModelConfig
from kaizen.nn.builder import build_layers, check_input_shape
from kaizen.nn.heads import attach_tasks
from kaizen.nn.init import WEIGHT_LAYERS, apply_init
from kaizen.nn.layers import activation_classes
from kaizen.registry import PRESETS

__all__ = [
    "activation_modules",
    "apply_init",
    "build_layers",
    "build_model",
    "split_parameters",
    "weight_parameters",
]


def build_model(
    model_cfg: ModelConfig,
    init_cfg: InitConfig | None,
    input_shape: Sequence[int],
    num_classes: int,
) -> nn.Module:
    """Return the network described by `model_cfg`: its preset (else its layer list), initialised by
    `init_cfg`, with a head for each extra task of `model_cfg.tasks` (those keep PyTorch's initialisation).

    A `model_cfg.backbone` is a timm network (kaizen.nn.backbone) with random weights; pretrained ones are
    loaded by the trainer. `input_shape` is one sample's (channels, height, width); the output is (N, num_classes) logits.
    """
    shape = check_input_shape(input_shape)
    if model_cfg.backbone is not None:  # timm's initialisation, unless init.* asks for another
        from kaizen.nn.backbone import build_backbone

        model = build_backbone(model_cfg.backbone, model_cfg.dropout, shape, num_classes)
        if init_cfg is not None and (init_cfg.weights != "default" or init_cfg.bias is not None):
            apply_init(model, init_cfg)
        return attach_tasks(model, model_cfg.tasks, shape)
    if model_cfg.preset is not None:
        model = PRESETS.create(model_cfg.preset, model_cfg, shape, num_classes)
    else:
        model = build_layers(model_cfg.layers or [], model_cfg, shape, num_classes)
    return attach_tasks(apply_init(model, init_cfg or InitConfig()), model_cfg.tasks, shape)


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Return the activation layers of `model` by qualified name ('act1', 'res2.act1', ...), in order."""
    classes = tuple(activation_classes())
    return {name: module for name, module in model.named_modules() if isinstance(module, classes)}


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Return (weights, others): the weights of dense/conv layers, and every other parameter.

    Others are biases, norm scales and shifts and PReLU slopes. Frozen parameters are included in both lists;
    callers that build optimisers filter on `requires_grad`.
    """
    # Keyed by identity so a layer shared between two places is listed once.
    weights = {id(m.weight): m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)}
    others = [param for param in model.parameters() if id(param) not in weights]
    return list(weights.values()), others


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the weights of the dense and conv layers of `model` (the parameters L1/L2 penalise)."""
    return split_parameters(model)[0]
