"""Each speed switch measured on its own: seconds per epoch, speed-up over plain fp32, test accuracy.

kaggle_cnn on mnist-10k (or digits where MNIST is absent). Every setting trains the same seeded run for
`--epochs` epochs; the table reports the median training time per epoch after the first (warm-up and, with
train.compile, compilation — reported in its own column), the speed-up over the plain fp32 setting with the
optimiser's per-tensor loop, and the test accuracy the run ends with. Settings alternate over `--rounds`
rounds, so drift in machine speed hits all alike.

    python benchmarks/switches.py [--epochs 4] [--rounds 2] [--device auto] [--config configs/kaggle_cnn.yaml]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import CONFIGS, MNIST, dataset_overrides, device_name, machine, train, train_seconds

import kaizen
from kaizen.training.fast import compile_unavailable

# Every setting starts from all switches off (the config's defaults would turn some on) and adds its own.
OFF = ["train.bf16=false", "train.channels_last=false", "train.compile=false", "train.cuda_graphs=false"]
BASELINE = ["optim.kernel=per_tensor"]
SETTINGS = {
    "fp32 + per-tensor optimiser": BASELINE,
    "fp32 + foreach optimiser": ["optim.kernel=foreach"],
    "fp32 + fused optimiser": ["optim.kernel=auto"],
    "channels-last": ["train.channels_last=true"],
    "bf16": ["train.bf16=true"],
    "bf16 + channels-last": ["train.bf16=true", "train.channels_last=true"],
    "compile": ["train.compile=true"],
    "compile + bf16 + channels-last": ["train.compile=true", "train.bf16=true", "train.channels_last=true"],
    "compile + CUDA graphs": ["train.compile=true", "train.cuda_graphs=true"],
    "compile + CUDA graphs + bf16": ["train.compile=true", "train.cuda_graphs=true", "train.bf16=true"],
    "kaizen defaults": None,  # whatever the config and the schema's defaults choose on this machine
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first warms up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over all settings")
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--config", default=str(CONFIGS / "kaggle_cnn.yaml"), help="the config to time")
    parser.add_argument("--only", default="", help="comma-separated setting names to run (default: all)")
    args = parser.parse_args()

    device = device_name(args.device)
    cfg = kaizen.Config.load(args.config).override([*dataset_overrides(args.root), f"train.device={device}"])
    settings = {
        name: overrides
        for name, overrides in SETTINGS.items()
        if (device == "cuda" or "CUDA" not in name)
        and ("compile" not in name or compile_unavailable(torch.device(device)) is None)
        and (not args.only or name in args.only.split(",") or overrides is BASELINE)
    }
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    first: dict[str, list[float]] = {name: [] for name in settings}
    accuracy: dict[str, float] = {}
    defaults = ""
    for _ in range(args.rounds):
        for name, overrides in settings.items():
            chosen = [] if overrides is None else [*OFF, *overrides]
            summary, rows = train(cfg, [*chosen, f"train.epochs={args.epochs}"])
            if overrides is None:
                defaults = ", ".join(f"{key}={value}" for key, value in summary["speed"].items())
            times = train_seconds(rows)
            seconds[name] += times[1:]
            first[name].append(times[0])
            accuracy[name] = summary["test"]["acc"]
            print(f"  {name}: {statistics.median(times[1:]):.3f} s/epoch", flush=True)

    print(
        f"\n{Path(args.config).stem} on {cfg.data.name}, batch {cfg.train.batch_size}, {args.epochs} epochs"
    )
    print(f"machine: {machine()}")
    print(f"{'setting':<32}{'s/epoch':>9}{'speed-up':>10}{'1st epoch':>11}{'test acc':>10}")
    base = statistics.median(seconds[next(iter(settings))])
    for name in settings:
        median = statistics.median(seconds[name])
        print(
            f"{name:<32}{median:>9.3f}{base / median:>9.2f}x{statistics.median(first[name]):>10.2f}s"
            f"{accuracy[name]:>10.2%}"
        )

    if defaults:
        print(f"kaizen defaults here: {defaults}")


if __name__ == "__main__":
    main()
