"""Time to 98.5% test accuracy on mnist-10k: training seconds until the test accuracy first reaches the target.

kaggle_cnn (seed 004's CNN) with kaizen's default switches, `--epochs` epochs of its schedule. After each epoch
the test accuracy is measured outside the timed part (through a custom metric); the time to the target is the
sum of the training parts of the epochs up to the first one that reaches it. Process start (importing torch
and kaizen) and the rest of a run's wall time (data loading, validation, checkpoints, and with train.compile
the compilation inside the first epoch, reported as the first epoch's excess over the median) are reported
separately. Several seeds, since one run can be lucky.

    python benchmarks/time_to_accuracy.py [--target 0.985] [--epochs 8] [--seeds 3] [--set train.bf16=true]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from common import CONFIGS, MNIST, dataset_overrides, device_name, machine, train, train_seconds

import kaizen


def test_accuracy(curve: list[float]):
    """A custom metric: the model's accuracy on the test split, appended to `curve` each epoch."""

    def metric(model: torch.nn.Module, data) -> float:
        from kaizen.evaluate import predict_proba

        acc = (predict_proba(model, data.x_test).argmax(1) == data.y_test).float().mean().item()
        curve.append(acc)
        return acc

    return metric


def process_start_seconds() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, kaizen"], check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.985, help="test accuracy to reach")
    parser.add_argument(
        "--epochs", type=int, default=8, help="the run's epoch budget (its schedule's length)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override")
    args = parser.parse_args()

    cfg = kaizen.Config.load(CONFIGS / "kaggle_cnn.yaml").override(
        [*dataset_overrides(args.root), f"train.device={device_name(args.device)}", *args.overrides]
    )
    print(
        f"kaggle_cnn on {cfg.data.name}, batch {cfg.train.batch_size}, {args.epochs} epochs of {cfg.schedule.name}"
    )
    print(f"overrides: {' '.join(args.overrides) or '(defaults)'}")
    print(f"machine: {machine()}")
    print(
        f"{'seed':<6}{'epoch':>6}{'train s':>9}{'final acc':>11}{'1st-epoch excess':>18}{'other wall s':>14}"
    )
    reached = []
    for seed in range(args.seeds):
        curve: list[float] = []
        began = time.perf_counter()
        summary, rows = train(
            cfg,
            [f"train.seed={seed}", f"train.epochs={args.epochs}"],
            metrics={"test_acc": test_accuracy(curve)},
        )
        wall = time.perf_counter() - began
        times = train_seconds(rows)
        hit = next((epoch for epoch, acc in enumerate(curve) if acc >= args.target), None)
        excess = times[0] - statistics.median(times[1:]) if len(times) > 1 else 0.0
        to_target = sum(times[: hit + 1]) if hit is not None else float("nan")
        if hit is not None:
            reached.append(to_target)
        print(
            f"{seed:<6}{hit + 1 if hit is not None else '-':>6}{to_target:>9.2f}{summary['test']['acc']:>11.2%}"
            f"{excess:>17.2f}s{wall - sum(times):>14.2f}"
        )
    start = process_start_seconds()
    if reached:
        print(
            f"time to {args.target:.1%}: median {statistics.median(reached):.2f} s of training "
            f"({len(reached)}/{args.seeds} seeds reached it); process start (import torch, kaizen) {start:.2f} s"
        )
    else:
        print(f"no seed reached {args.target:.1%} in {args.epochs} epochs; process start {start:.2f} s")


if __name__ == "__main__":
    main()
