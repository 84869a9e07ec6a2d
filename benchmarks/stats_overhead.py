"""Cost of seeing inside training: epoch time with the statistics recorder and TensorBoard on and off.

kaggle_cnn on mnist-10k (or the bundled digits where MNIST is absent), the same config four ways: nothing
recorded beyond metrics.csv, per-layer statistics only (default sampling), TensorBoard only (scalars,
histograms, filter images) and both (kaizen's default), plus stats sampled at every step, which prices one sampled step. The epoch time is wall time between the ends of
consecutive epochs, so it includes everything an epoch does: training steps, validation, stats.jsonl,
TensorBoard events and checkpoints. Each epoch is timed twice: CPU seconds of this process (all its
threads, so TensorBoard's writer thread counts; other programs on a shared machine do not) and wall seconds.
The first epoch of each run is warm-up and left out; the variants alternate over several rounds so drift in
machine speed hits all alike. Prints a table and the ratios.

    python benchmarks/stats_overhead.py [--epochs 4] [--rounds 3] [--threads 1] [--root ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import kaizen
from kaizen.data import load_data
from kaizen.track.progress import Reporter
from kaizen.track.stats import sample_every
from kaizen.training.loop import fit

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
VARIANTS = {
    "nothing extra": ["log.stats=false", "log.tensorboard=false"],
    "stats (default sampling)": ["log.stats=true", "log.tensorboard=false"],
    "TensorBoard": ["log.stats=false", "log.tensorboard=true"],
    "stats + TensorBoard": ["log.stats=true", "log.tensorboard=true"],
    "stats, every step sampled": ["log.stats=true", "log.tensorboard=false", "log.stats_every=1"],
}


class EpochClock(Reporter):
    """A silent reporter that notes the CPU and wall time at the end of every epoch."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.ends: list[tuple[float, float]] = []

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.ends.append((time.process_time(), time.perf_counter()))


def epoch_seconds(cfg: kaizen.Config, overrides: list[str], epochs: int) -> list[tuple[float, float]]:
    """(CPU seconds, wall seconds) of epochs 2..N of one run of `cfg` with `overrides`."""
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as runs:
        fit(
            cfg.override([*overrides, f"train.epochs={epochs}", f"log.runs_dir={runs}", "log.plots=false"]),
            reporter=clock,
        )
    return [
        (cpu - cpu_before, wall - wall_before)
        for (cpu_before, wall_before), (cpu, wall) in zip(clock.ends, clock.ends[1:])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the four variants")
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--digits", action="store_true", help="use the bundled digits even if MNIST is there")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    args = parser.parse_args()

    config = Path(__file__).resolve().parents[1] / "configs" / "kaggle_cnn.yaml"
    on_mnist = Path(args.root).is_dir() and not args.digits
    dataset = ["data.name=mnist", f"data.root={args.root}"] if on_mnist else ["data.name=digits"]
    cfg = kaizen.Config.load(config).override([*dataset, "train.device=cpu", f"train.threads={args.threads}"])
    n_train = len(load_data(cfg.data, "cpu").y_train)

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for round_number in range(1, args.rounds + 1):
        for name, overrides in VARIANTS.items():
            times[name] += epoch_seconds(cfg, overrides, args.epochs)
        line = ", ".join(f"{name} {median(values, 0):.2f}s" for name, values in times.items())
        print(f"round {round_number} (CPU s/epoch): {line}", flush=True)

    base_cpu, base_wall = median(times["nothing extra"], 0), median(times["nothing extra"], 1)
    steps = n_train // cfg.train.batch_size + (1 if n_train % cfg.train.batch_size > 1 else 0)
    print(
        f"\ndata: {cfg.data.name} ({n_train:,} training images, {steps} steps/epoch), model kaggle_cnn, "
        f"batch {cfg.train.batch_size}, threads={torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"{'recording':<28}{'CPU s/epoch':>12}{'overhead':>10}{'wall s/epoch':>14}{'overhead':>10}")
    for name, values in times.items():
        cpu, wall = median(values, 0), median(values, 1)
        print(f"{name:<28}{cpu:>12.3f}{cpu / base_cpu - 1:>10.1%}{wall:>14.3f}{wall / base_wall - 1:>10.1%}")
    stats_ratio = median(times["stats (default sampling)"], 0) / base_cpu
    print(f"stats overhead: {stats_ratio - 1:.1%} of epoch CPU time (target <= 10%)")
    per_step = (median(times["stats, every step sampled"], 0) - base_cpu) / steps
    samples = sample_every(steps, None)
    print(
        f"one sampled step costs {1000 * per_step:.2f} ms extra (an average step: {1000 * base_cpu / steps:.2f} ms); "
        f"the default {steps // samples} samples per epoch: {steps // samples * per_step / base_cpu:.1%} of an epoch"
    )


def median(pairs: list[tuple[float, float]], index: int) -> float:
    """The median of one coordinate (0: CPU, 1: wall) of (CPU, wall) pairs."""
    return statistics.median(pair[index] for pair in pairs)


if __name__ == "__main__":
    main()
