"""Batched augmentation on the training device: one call per batch, no per-image Python loop.

Geometry (rotation, shift, shear, zoom, elastic distortion) is one resampling: a per-sample affine grid, plus a
smoothed random displacement field for elastic distortion, read with `grid_sample`. Edges replicate the border
pixels, as Keras' default `fill_mode='nearest'` does in seed 004. Flips, Gaussian noise and cutout are masks;
mixup and cutmix blend a batch with a shuffled copy of itself and return both label sets with their weight.
Evaluation never calls this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from kaizen.config import AugmentConfig, Config
from kaizen.errors import KaizenError


@dataclass
class Batch:
    """An augmented batch. With mixing, the loss is `mix * loss(y) + (1 - mix) * loss(y_mixed)`."""

    x: torch.Tensor
    y: torch.Tensor
    y_mixed: torch.Tensor | None = None
    mix: float | None = None


class Augment:
    """Applies the `augment` section of a config to training batches (N×C×H×W, normalised)."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg
        self.geometric = any((cfg.rotation, cfg.width_shift, cfg.height_shift, cfg.shear, cfg.zoom))
        self.active = self.geometric or any(
            (cfg.hflip, cfg.vflip, cfg.noise, cfg.elastic_alpha, cfg.cutout, cfg.mixup, cfg.cutmix)
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        """Return the augmented batch (the input is not modified)."""
        cfg = self.cfg
        if not self.active:
            return Batch(x, y)
        if self.geometric or cfg.elastic_alpha:
            x = F.grid_sample(x, self._grid(x), mode="bilinear", padding_mode="border", align_corners=False)
        if cfg.hflip:
            x = torch.where(_coin(x) < 0.5, x.flip(-1), x)
        if cfg.vflip:
            x = torch.where(_coin(x) < 0.5, x.flip(-2), x)
        if cfg.cutout:
            x = x * ~self._boxes(x, side=cfg.cutout)
        if cfg.noise:
            x = x + cfg.noise * torch.randn_like(x)
        if cfg.mixup or cfg.cutmix:
            return self._mix(x, y)
        return Batch(x, y)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """Sampling grid: where each output pixel reads the input, in [-1, 1] coordinates."""
        cfg = self.cfg
        n, _, height, width = x.shape

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(n, device=x.device) * 2 - 1) * limit

        angle = uniform(math.radians(cfg.rotation))
        shear = uniform(cfg.shear)
        zoom = 1 + uniform(cfg.zoom)
        cos, sin, slant = angle.cos(), angle.sin(), shear.tan()
        # rotation · x-shear, shrunk by the zoom factor (zoom > 1 reads a smaller region: the digit grows)
        theta = torch.stack(
            [
                torch.stack([cos, cos * slant - sin, uniform(2 * cfg.width_shift)], 1),
                torch.stack([sin, sin * slant + cos, uniform(2 * cfg.height_shift)], 1),
            ],
            1,
        )
        theta[:, :, :2] /= zoom[:, None, None]
        grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
        if cfg.elastic_alpha:
            grid = grid + self._displacement(n, height, width, x.device)
        return grid

    def _displacement(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Elastic distortion (Simard et al. 2003): uniform noise smoothed by a Gaussian, scaled by alpha pixels."""
        sigma = self.cfg.elastic_sigma
        radius = max(1, int(3 * sigma))
        taps = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
        kernel = torch.exp(-(taps**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        field = torch.rand(n, 2, height, width, device=device) * 2 - 1
        field = F.conv2d(
            F.pad(field, (radius, radius, 0, 0), mode="replicate"),
            kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1),
            groups=2,
        )
        field = F.conv2d(
            F.pad(field, (0, 0, radius, radius), mode="replicate"),
            kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1),
            groups=2,
        )
        scale = torch.tensor([2 / width, 2 / height], device=device).view(1, 2, 1, 1)  # pixels -> grid units
        return (self.cfg.elastic_alpha * field * scale).permute(0, 2, 3, 1)

    def _boxes(self, x: torch.Tensor, side: float) -> torch.Tensor:
        """A boolean mask (N×1×H×W) of one square per sample, `side` × image size, centred at random."""
        n, _, height, width = x.shape
        cy, cx = torch.rand(n, 1, 1, device=x.device), torch.rand(n, 1, 1, device=x.device)
        rows = (torch.arange(height, device=x.device) + 0.5).view(1, -1, 1) / height
        cols = (torch.arange(width, device=x.device) + 0.5).view(1, 1, -1) / width
        inside = ((rows - cy).abs() < side / 2) & ((cols - cx).abs() < side / 2)
        return inside.unsqueeze(1)

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        """Mixup (blend whole images) or cutmix (paste a box); one of them per batch when both are on.

        The mixing weight and the box are drawn on the host (CPU generator), so nothing waits on the device.
        """
        cfg = self.cfg
        use_cutmix = bool(cfg.cutmix) and (not cfg.mixup or torch.rand(()).item() < 0.5)
        alpha = cfg.cutmix if use_cutmix else cfg.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        order = torch.randperm(len(x)).to(x.device)
        if not use_cutmix:
            return Batch(lam * x + (1 - lam) * x[order], y, y[order], lam)
        height, width = x.shape[-2:]
        box_h, box_w = round(height * math.sqrt(1 - lam)), round(width * math.sqrt(1 - lam))
        top = int(torch.randint(0, height - box_h + 1, ()))
        left = int(torch.randint(0, width - box_w + 1, ()))
        x = x.clone()
        x[:, :, top : top + box_h, left : left + box_w] = x[order][
            :, :, top : top + box_h, left : left + box_w
        ]
        return Batch(x, y, y[order], 1 - box_h * box_w / (height * width))


def for_test_time(cfg: AugmentConfig) -> Augment:
    """The part of a training augmentation that suits test-time augmentation: geometry and flips.

    Noise, cutout, elastic distortion and mixing make training harder; averaged over at test time they only
    blur the prediction. KaizenError when nothing is left (the run was trained without such augmentation).
    """
    keep = cfg.model_copy(
        update={"noise": 0.0, "cutout": 0.0, "elastic_alpha": 0.0, "mixup": 0.0, "cutmix": 0.0}
    )
    augment = Augment(keep)
    if not augment.active:
        raise KaizenError(
            "test-time augmentation uses the run's own augmentation (rotation, shift, shear, zoom, flips), "
            "and this run was trained without it; train with e.g. --set augment=kaggle"
        )
    return augment


def preview(cfg: Config, out_png: Path, images: int = 8, copies: int = 6) -> None:
    """Write a PNG of `images` training images (first column) beside `copies` augmented versions of each."""
    from kaizen.data import load_data
    from kaizen.track.plots import plot_augment_preview

    if images < 1 or copies < 1:
        raise KaizenError("augment-preview needs at least one image and one copy")
    augment = Augment(cfg.augment)
    if not augment.active:
        raise KaizenError("this config has no augmentation to preview; try --set augment=kaggle")
    data = load_data(cfg.data, "cpu")
    torch.manual_seed(cfg.train.seed)
    x = data.x_train[:images]
    y = data.y_train[:images]
    augmented = torch.stack([augment(x, y).x for _ in range(copies)], 1)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    shown = (augmented * std.unsqueeze(1) + mean.unsqueeze(1)).numpy()
    settings = ", ".join(
        f"{key} {value:g}"
        for key, value in cfg.augment.model_dump().items()
        if value and key != "elastic_sigma"
    )
    plot_augment_preview((x * std + mean).numpy(), shown, out_png, f"augmentation: {settings}")


def _coin(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(len(x), 1, 1, 1, device=x.device)
