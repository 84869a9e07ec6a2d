"""Training throughput: kaizen's loop against a minimal hand-written PyTorch loop over a DataLoader.

Same model (kaggle_cnn), same data (mnist-10k, or digits where MNIST is absent), same batch size, same
process, in fp32 and in bf16 autocast. kaizen runs with its recording on (running loss/accuracy, metrics.csv,
checkpoints each epoch) and its default switches; the timing is the training part of each epoch (validation
is timed separately by kaizen and left out, as the minimal loop has none). The first epoch of each
measurement warms up and is dropped; the loops alternate, so drift in machine speed hits both alike.

With `--accuracy-seeds N` it then trains the full config (15 epochs) N times per precision and prints the test
accuracy: bf16 must keep it (within 0.2 points of fp32).

    python benchmarks/throughput.py [--epochs 3] [--rounds 2] [--precision fp32,bf16] [--device auto]
                                    [--accuracy-seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import CONFIGS, MNIST, dataset_overrides, device_name, machine, train, train_seconds
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kaizen
from kaizen.data import load_data
from kaizen.nn import build_model


def minimal_loop(cfg: kaizen.Config, epochs: int) -> list[float]:
    """Seconds per epoch of the loop most tutorials write: DataLoader, .to(device), forward, loss, backward, step."""
    # kaizen's run leaves process-wide switches on (denormal flushing); the minimal loop runs with PyTorch's
    # defaults, as a hand-written script would.
    torch.set_flush_denormal(False)
    torch.manual_seed(cfg.train.seed)
    device = torch.device(cfg.train.device)
    data = load_data(cfg.data, "cpu")
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=cfg.train.batch_size, shuffle=True
    )
    criterion = nn.CrossEntropyLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.bf16)
    times = []
    model.train()
    for _ in range(epochs):
        began = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            with autocast:
                loss = criterion(model(x).float(), y)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first warms up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both loops")
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--accuracy-seeds", type=int, default=0, help="full runs per precision for accuracy")
    args = parser.parse_args()

    device = device_name(args.device)
    # both loops on the same threads: kaizen's default would count the cores free at that moment instead
    base = kaizen.Config.load(CONFIGS / "kaggle_cnn.yaml").override(
        [*dataset_overrides(args.root), f"train.device={device}", f"train.threads={torch.get_num_threads()}"]
    )
    n_train = len(load_data(base.data, "cpu").y_train)
    print(f"kaggle_cnn on {base.data.name} ({n_train:,} training images), batch {base.train.batch_size}")
    print(f"machine: {machine()}")
    print(f"{'precision':<10}{'loop':<26}{'images/s':>10}{'s/epoch':>9}{'ratio':>8}")
    kaizen_speed = {}
    for precision in args.precision.split(","):
        cfg = base.override([f"train.bf16={precision == 'bf16'}"])
        mine, theirs = [], []
        for _ in range(args.rounds):
            theirs += minimal_loop(cfg, args.epochs)[1:]
            mine += train_seconds(train(cfg, [f"train.epochs={args.epochs}"])[1])[1:]
        minimal_ips, kaizen_ips = n_train / statistics.median(theirs), n_train / statistics.median(mine)
        kaizen_speed[precision] = kaizen_ips
        print(
            f"{precision:<10}{'minimal DataLoader loop':<26}{minimal_ips:>10,.0f}{statistics.median(theirs):>9.2f}"
        )
        print(
            f"{'':<10}{'kaizen':<26}{kaizen_ips:>10,.0f}{statistics.median(mine):>9.2f}"
            f"{kaizen_ips / minimal_ips:>7.2f}x"
        )
    if {"fp32", "bf16"} <= kaizen_speed.keys():
        print(f"kaizen bf16 / kaizen fp32: {kaizen_speed['bf16'] / kaizen_speed['fp32']:.2f}x")
    means = {}
    for precision in args.precision.split(",") if args.accuracy_seeds else []:
        cfg = base.override([f"train.bf16={precision == 'bf16'}"])
        scores = [train(cfg, [f"train.seed={seed}"])[0]["test"]["acc"] for seed in range(args.accuracy_seeds)]
        means[precision] = statistics.mean(scores)
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        listed = ", ".join(f"{score:.2%}" for score in scores)
        print(
            f"test accuracy {precision}, {cfg.train.epochs} epochs: {means[precision]:.2%} ± {spread:.2%} ({listed})"
        )
    if {"fp32", "bf16"} <= means.keys():
        print(f"bf16 - fp32: {(means['bf16'] - means['fp32']) * 100:+.2f} points (target: within 0.2)")


if __name__ == "__main__":
    main()
