"""Augmentation: what `augment: kaggle` (seed 004's set) costs per epoch, and what it buys in accuracy.

kaggle_cnn on mnist-10k (or digits where MNIST is absent). The cost is the median training time per epoch with
and without augmentation, measured in alternating rounds in one process; the gain is the test accuracy of both
at the same epoch budget over several seeds.

    python benchmarks/augment.py [--root ../shared/data/mnist] [--seeds 3] [--skip-accuracy]
    python benchmarks/augment.py --calls      # one augmentation call against plain PyTorch, and the MLP epoch

`--calls` times one `augment: kaggle` call on a batch (64×1×28×28 and 32×3×32×32, median of 2,000 after
warm-up) against the plain PyTorch way (F.affine_grid on the per-sample matrices, F.grid_sample), and the
seconds per epoch of benchmarks/improve.py's mnist-10k MLP with and without augmentation, where the warp is
large against the model.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import CONFIGS, MNIST, dataset_overrides, train, train_seconds

import kaizen

QUIET = ["train.device=cpu"]


def epoch_seconds(cfg: kaizen.Config, augment: str, epochs: int) -> list[float]:
    _, rows = train(cfg, [f"augment={augment}", f"train.epochs={epochs}"])
    return train_seconds(rows)[1:]  # the first epoch warms up


def call_ms(function, repeats: int = 2000) -> float:
    """Median milliseconds of one call, in 20 timed blocks after a warm-up."""
    for _ in range(50):
        function()
    blocks = []
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(repeats // 20):
            function()
        blocks.append((time.perf_counter() - start) / (repeats // 20) * 1e3)
    return statistics.median(blocks)


def plain_affine(x: torch.Tensor, cfg) -> torch.Tensor:
    """The plain PyTorch way: the same random per-sample matrices, F.affine_grid, F.grid_sample."""
    n = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n) * 2 - 1) * limit

    angle, shear, zoom = uniform(math.radians(cfg.rotation)), uniform(cfg.shear), 1 + uniform(cfg.zoom)
    cos, sin, slant = angle.cos(), angle.sin(), shear.tan()
    theta = torch.stack(
        [
            torch.stack([cos, cos * slant - sin, uniform(2 * cfg.width_shift)], 1),
            torch.stack([sin, sin * slant + cos, uniform(2 * cfg.height_shift)], 1),
        ],
        1,
    )
    theta[:, :, :2] /= zoom[:, None, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def calls() -> None:
    from improve import start_config

    from kaizen.data.augment import Augment

    torch.set_num_threads(1)
    cfg = kaizen.Config().override(["augment=kaggle"])
    augment = Augment(cfg.augment)
    for shape in ((64, 1, 28, 28), (32, 3, 32, 32)):
        x, y = torch.randn(*shape), torch.zeros(shape[0], dtype=torch.long)
        ours = call_ms(lambda x=x, y=y: augment(x, y))
        plain = call_ms(lambda x=x: plain_affine(x, cfg.augment))
        print(
            f"one call on {'x'.join(map(str, shape))}: kaizen {ours:.3f} ms, plain PyTorch {plain:.3f} ms "
            f"(ratio {ours / plain:.2f})"
        )
    with tempfile.TemporaryDirectory() as work:
        mlp = start_config("mnist-10k", True, Path(work)).override(["train.threads=1"])
        plain_s, augmented_s = [], []
        for _ in range(2):
            plain_s += epoch_seconds(mlp, "none", 4)
            augmented_s += epoch_seconds(mlp, "kaggle", 4)
    base, extra = statistics.median(plain_s), statistics.median(augmented_s)
    print(
        f"mnist-10k MLP (improve.py's start): seconds per epoch none {base:.3f}, kaggle {extra:.3f} ({extra / base:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting for the accuracy comparison")
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure the cost")
    parser.add_argument(
        "--calls", action="store_true", help="one call against plain PyTorch, and the MLP epoch"
    )
    args = parser.parse_args()
    if args.calls:
        calls()
        return

    cfg = kaizen.Config.load(CONFIGS / "kaggle_cnn.yaml").override([*dataset_overrides(args.root), *QUIET])
    plain, augmented = [], []
    for _ in range(args.rounds):
        plain += epoch_seconds(cfg, "none", 3)
        augmented += epoch_seconds(cfg, "kaggle", 3)
    base, extra = statistics.median(plain), statistics.median(augmented)
    print(f"kaggle_cnn on {cfg.data.name}, batch {cfg.train.batch_size}")
    print(
        f"seconds per epoch: none {base:.2f}, kaggle {extra:.2f} -> overhead {extra / base - 1:+.1%} (target <= 15%)"
    )
    if args.skip_accuracy:
        return
    for augment in ("none", "kaggle"):
        scores = [
            train(cfg, [f"augment={augment}", f"train.seed={seed}"])[0]["test"]["acc"]
            for seed in range(args.seeds)
        ]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        listed = ", ".join(f"{score:.2%}" for score in scores)
        print(f"test accuracy, augment={augment:<6} {statistics.mean(scores):.2%} ± {spread:.2%}  ({listed})")


if __name__ == "__main__":
    main()
