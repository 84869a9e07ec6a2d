"""Several small runs at once: the same study run one at a time and with K workers, in runs per hour.

A small model (simple_cnn, ~5k parameters, on mnist-10k or the bundled digits where MNIST is absent) cannot
fill a GPU, nor keep many CPU threads busy: per-step overhead (kernel launches, Python) dominates. So the
same N runs (one config, seeds 0..N-1, kaizen's default recording on) are run as a compare study twice: with
one worker (in this process, all cores' threads for the one run) and with K worker processes (cores // K
threads each; on CUDA they share the GPU). Each study's wall clock (lock to last result, worker start-up
included) gives runs per hour; the runs' own times over the wall clock say how many ran at once on average.
On CUDA the runs use the GPU (train.device auto) and K defaults to WORKERS_PER_GPU per GPU.

    python benchmarks/concurrent_runs.py [--runs 8] [--workers K] [--epochs 2] [--preset simple_cnn]
        [--root ../shared/data/mnist] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import kaizen
from kaizen.study.backends import WORKERS_PER_GPU, usable_cores
from kaizen.study.compare import Variant, make_plan, run_plan

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def base_config(args: argparse.Namespace) -> tuple[kaizen.Config, str]:
    """The runs' config and the name of its data."""
    overrides = [f"model.preset={args.preset}", f"train.epochs={args.epochs}", "log.progress=false"]
    if any(
        (Path(args.root) / name).is_file() for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")
    ):
        overrides += ["data.name=mnist", f"data.root={Path(args.root).resolve()}"]
        data = "mnist-10k"
    else:
        overrides += ["data.name=digits"]
        data = "digits"
    return kaizen.Config().override([*overrides, *args.set]), data


def measure(cfg: kaizen.Config, runs: int, workers: int) -> dict:
    """The throughput record of one study of `runs` seeds of `cfg` on `workers` workers."""
    plan = make_plan(cfg, [Variant("base", ())], runs, title="concurrent runs")
    with tempfile.TemporaryDirectory() as study:
        outcome = run_plan(plan, study, workers)
    if outcome.failed:
        raise SystemExit(f"a run failed: {outcome.failed[0].error}")
    return outcome.throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="K (default: 4 per GPU, else the cores)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="simple_cnn")
    parser.add_argument("--root", default=str(MNIST))
    parser.add_argument("--set", action="append", default=[], help="more overrides, key=value")
    args = parser.parse_args()

    cfg, data = base_config(args)
    gpus = (
        torch.cuda.device_count() if torch.cuda.is_available() and cfg.train.device in ("auto", "cuda") else 0
    )
    workers = args.workers or (min(usable_cores(), WORKERS_PER_GPU * gpus) if gpus else usable_cores())
    device = torch.cuda.get_device_name(0) if gpus else f"CPU, {usable_cores()} cores"
    print(
        f"{args.runs} runs of {args.preset} on {data}, {args.epochs} epochs each · {device} · torch {torch.__version__}"
    )

    rows = []
    for count in (1, workers):
        record = measure(cfg, args.runs, count)
        rows.append((count, record))
        print(
            f"  workers={count}: {record['wall_seconds']:.1f} s wall, {record['runs_per_hour']:.0f} runs/hour "
            f"({record['where']})",
            flush=True,
        )
    print()
    print("| workers | layout | wall s | runs' own s | at a time | runs/hour |")
    print("|---|---|---|---|---|---|")
    for count, record in rows:
        print(
            f"| {count} | {record['where']} | {record['wall_seconds']:.1f} | {record['run_seconds']:.1f} | "
            f"{record['concurrency']:.2f} | {record['runs_per_hour']:.0f} |"
        )
    ratio = rows[1][1]["runs_per_hour"] / rows[0][1]["runs_per_hour"]
    print(f"\nworkers={workers} against one at a time: **{ratio:.2f}×** runs per hour")


if __name__ == "__main__":
    main()
