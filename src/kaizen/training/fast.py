"""The fast path's model-side switches: channels-last memory format, torch.compile and CUDA graphs.

`prepare` returns the callable the training step runs the forward pass through. The module itself stays the
plain `nn.Module` (its state_dict, hooks and evaluation are unchanged); only the step goes through the compiled
wrapper, so checkpoints never carry torch.compile's `_orig_mod.` prefixes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from kaizen.config import TrainConfig


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run here (one line), or None when it can."""
    try:
        from torch._dynamo.eval_frame import is_dynamo_supported  # private; present since torch 2.0

        supported = is_dynamo_supported()
    except ImportError:
        supported = True  # let torch.compile itself decide
    if not supported:
        return "torch.compile does not support this Python/platform"
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (g++ or clang++) on PATH"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "torch.compile on CUDA needs triton (pip install triton)"
    if device.type == "mps":
        return "torch.compile is not used on MPS"
    return None


BF16_MIN_MACS = 1_000_000  # measured: below ~1M multiply-adds per example bf16 autocast is slower on a CPU


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 in hardware (not by emulation)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.5 does not emulate
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpuinfo = Path("/proc/cpuinfo")
        flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))
    return False


def use_bf16(cfg: TrainConfig, model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> bool:
    """Resolve `train.bf16`: true/false as given; auto on bf16-native devices for models worth the casts."""
    if cfg.bf16 != "auto":
        return bool(cfg.bf16)
    if not native_bf16(device):
        return False
    from kaizen.nn.summary import summarize

    return summarize(model, input_shape).macs >= BF16_MIN_MACS


def uses_channels_last(model: nn.Module, cfg: TrainConfig) -> bool:
    return cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare(
    model: nn.Module, cfg: TrainConfig, device: torch.device, say: Callable[[str], None]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply channels-last to `model` in place and return the training step's forward callable.

    `say` receives one line when a switch cannot apply here (the run goes on without it).
    """
    if uses_channels_last(model, cfg):
        model.to(memory_format=torch.channels_last)
    if cfg.cuda_graphs and device.type != "cuda":
        say("train.cuda_graphs applies only on CUDA; training without CUDA graphs")
    if not cfg.compile:
        return model
    why = compile_unavailable(device)
    if why is not None:
        say(f"train.compile: {why}; training without compilation")
        return model
    # CUDA graphs come through torch.compile's "reduce-overhead" mode (static shapes: the last, smaller
    # batch of an epoch gets its own graph).
    mode = "reduce-overhead" if cfg.cuda_graphs and device.type == "cuda" else None
    return torch.compile(model, mode=mode)


def in_effect(
    model: nn.Module,
    cfg: TrainConfig,
    forward: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    bf16: bool,
) -> dict[str, bool | str | int | None]:
    """The speed switches this run actually trained with (summary.json `speed`): a fallback shows here."""
    defaults = optimizer.defaults
    compiled = forward is not model
    return {
        "bf16": bf16,
        "channels_last": uses_channels_last(model, cfg),
        "compile": compiled,
        "cuda_graphs": compiled and cfg.cuda_graphs and device.type == "cuda",
        "optimizer_kernel": "fused"
        if defaults.get("fused")
        else "foreach"
        if defaults.get("foreach")
        else "per_tensor",
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
