"""Every CNN preset builds for 1 or 3 channels and any size from 8 x 8 to 128 x 128, and trains a step."""

from __future__ import annotations

import pytest
import torch

import kaizen
from kaizen.nn import build_model
from kaizen.nn.presets import MAX_FLAT

PRESETS = ["simple_cnn", "lenet5", "conv_net", "kaggle_cnn", "vgg_small", "resnet_small"]
SIZES = [(8, 8), (9, 13), (28, 28), (32, 32), (37, 100), (64, 64), (128, 128)]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_for_every_size_and_channel_count(preset):
    cfg = kaizen.Config().override([f"model.preset={preset}"])
    for channels in (1, 3):
        for size in SIZES:
            model = build_model(cfg.model, cfg.init, (channels, *size), 5)
            flat = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][0].in_features
            assert flat <= MAX_FLAT, (preset, channels, size, flat)
            model.train()
            x = torch.randn(2, channels, *size)
            loss = model(x).logsumexp(1).mean()
            loss.backward()  # a training step's gradients reach the first layer
            first = next(p for p in model.parameters() if p.dim() > 1)
            assert first.grad is not None and first.shape[1] == channels


@pytest.mark.parametrize(
    ("preset", "params"), [("conv_net", 433_645), ("kaggle_cnn", 593_765), ("lenet5", 61_733)]
)
def test_seed_input_sizes_keep_their_shapes(preset, params):
    cfg = kaizen.Config().override([f"model.preset={preset}"])
    model = build_model(cfg.model, cfg.init, (1, 28, 28), 5)
    assert sum(p.numel() for p in model.parameters()) == params
