"""Training throughput: kaizen's loop against a minimal hand-written PyTorch loop over a DataLoader.

Same model (kaggle_cnn), same data (mnist-10k, or digits where MNIST is absent), same batch size, same
process. kaizen runs with its recording on (running loss/accuracy, metrics.csv, checkpoints each epoch); the
timing is the training part of each epoch (validation is timed separately by kaizen and left out, as the
minimal loop has none). Prints images per second and the ratio.

    python benchmarks/throughput.py [--epochs 3] [--root ../shared/data/mnist] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kaizen
from kaizen.data import load_data
from kaizen.nn import build_model

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def minimal_loop(cfg: kaizen.Config, epochs: int) -> list[float]:
    """Seconds per epoch of the loop most tutorials write: DataLoader, forward, loss, backward, step."""
    # kaizen's run leaves process-wide switches on (denormal flushing, deterministic kernels); the minimal loop
    # runs with PyTorch's defaults, as a hand-written script would.
    torch.set_flush_denormal(False)
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(cfg.train.seed)
    data = load_data(cfg.data, "cpu")
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=cfg.train.batch_size, shuffle=True
    )
    criterion = nn.CrossEntropyLoss()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16)
    times = []
    model.train()
    for _ in range(epochs):
        began = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            with autocast:
                loss = criterion(model(x).float(), y)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - began)
    return times


def kaizen_loop(cfg: kaizen.Config, epochs: int) -> list[float]:
    """Seconds per epoch (training part) of kaizen.train, read back from the run's metrics.csv."""
    with tempfile.TemporaryDirectory() as runs:
        run = kaizen.train(
            cfg.override([f"train.epochs={epochs}", f"log.runs_dir={runs}", "log.plots=false"])
        )
        return [row["seconds"] for row in run.metrics() if row["split"] == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both loops")
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in both loops")
    args = parser.parse_args()

    config = Path(__file__).resolve().parents[1] / "configs" / "kaggle_cnn.yaml"
    dataset = (
        ["data.name=mnist", f"data.root={args.root}"] if Path(args.root).is_dir() else ["data.name=digits"]
    )
    cfg = kaizen.Config.load(config).override([*dataset, "train.device=cpu", f"train.bf16={args.bf16}"])
    n_train = len(load_data(cfg.data, "cpu").y_train)

    mine, theirs = [], []
    for _ in range(args.rounds):  # alternate, so drift in machine speed hits both alike
        theirs += minimal_loop(cfg, args.epochs)[1:]
        mine += kaizen_loop(cfg, args.epochs)[1:]
        print(f"round: minimal {theirs[-1]:.2f} s/epoch, kaizen {mine[-1]:.2f} s/epoch", flush=True)
    minimal_ips = n_train / statistics.median(theirs)
    kaizen_ips = n_train / statistics.median(mine)
    print(
        f"data: {cfg.data.name} ({n_train:,} training images), model kaggle_cnn, batch {cfg.train.batch_size}, "
        f"bf16={args.bf16}, threads={torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"{'loop':<28}{'images/s':>12}{'s/epoch':>10}")
    print(f"{'minimal DataLoader loop':<28}{minimal_ips:>12,.0f}{statistics.median(theirs):>10.2f}")
    print(f"{'kaizen (recording on)':<28}{kaizen_ips:>12,.0f}{statistics.median(mine):>10.2f}")
    print(f"ratio kaizen / minimal: {kaizen_ips / minimal_ips:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
