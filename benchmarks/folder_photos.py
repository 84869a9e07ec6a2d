"""Real photographs in a folder: kaizen's default model against a plain PyTorch CNN script on the same files.

The folder is built from scikit-learn's two sample photos (`kaizen.data.samples`: four classes, each a region
of one photo; crops of 40-100 pixels saved as JPEG and PNG, grayscale and RGB). kaizen trains its default config
(vgg_small, Adam, cosine schedule, batch norm, dropout 0.3) with only the data settings given; the plain
script is what a practitioner would write: PIL `convert("RGB").resize`, a two-conv CNN, Adam 1e-3, the same
epochs and batch size. Both train on the same files (kaizen's train + validation split) and are tested on the
same held-out files, for each seed.

    python benchmarks/folder_photos.py [--seeds 3] [--per-class 40] [--size 32] [--epochs 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine
from PIL import Image
from torch import nn

import kaizen
from kaizen.data import load_data
from kaizen.data.samples import make_photo_folder


def plain_cnn(classes: int, size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (size // 4) ** 2, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def read(paths: list[str], size: int) -> torch.Tensor:
    images = [np.asarray(Image.open(path).convert("RGB").resize((size, size))) for path in paths]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def plain_script(train: tuple, test: tuple, classes: int, size: int, epochs: int, seed: int) -> float:
    """Train the plain CNN on (paths, labels) and return its test accuracy."""
    torch.manual_seed(seed)
    x_train, y_train = read(train[0], size), torch.as_tensor(train[1])
    x_test, y_test = read(test[0], size), torch.as_tensor(test[1])
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    model = plain_cnn(classes, size)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_train)).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as work:
        root = make_photo_folder(Path(work) / "photos", per_class=args.per_class)
        base = kaizen.Config().override(
            [
                "data.name=folder",
                f"data.path={root}",
                f"data.cache={work}/cache",
                f"data.image_size={args.size}",
                f"train.epochs={args.epochs}",
                "log.plots=false",
                f"log.runs_dir={work}/runs",
            ]
        )
        data = load_data(base.data)
        train = (data.paths["train"] + data.paths["val"], torch.cat([data.y_train, data.y_val]).tolist())
        test = (data.paths["test"], data.y_test.tolist())
        print(
            f"{data.source}\n{len(train[0])} training files, {len(test[0])} test files, {args.epochs} epochs"
        )
        rows = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            run = kaizen.train(base.override([f"train.seed={seed}"]))
            ours = run.summary["test"]["acc"]
            middle = time.perf_counter()
            plain = plain_script(train, test, data.num_classes, args.size, args.epochs, seed)
            end = time.perf_counter()
            rows.append((ours, plain))
            print(
                f"seed {seed}: kaizen {ours:.2%} ({middle - start:.0f} s) · plain PyTorch {plain:.2%} "
                f"({end - middle:.0f} s)",
                flush=True,
            )
        for name, values in (
            ("kaizen default", [r[0] for r in rows]),
            ("plain PyTorch", [r[1] for r in rows]),
        ):
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(
                f"{name:>15}: mean test accuracy {statistics.mean(values):.2%} ± {spread:.2%} over {len(values)}"
            )


if __name__ == "__main__":
    main()
