"""The default job on a machine that is idle and on one that is also running a second job, by thread choice.

torch's own default is one thread per core; kaizen's default (train.threads unset) counts the cores actually
free (the affinity less the 1-minute load average, at least 1). Each row trains the default job (`kaizen
train`, the digits CNN, `--epochs` epochs, statistics and plots on as a user gets them) in a fresh process, with
train.threads = the core count (torch's default), unset (kaizen's choice, which meta.json explains) and 1; first
alone, then beside a second job: a process multiplying matrices on every core, as another training would. Each
row prints `uptime`'s load before it, the threads the run used, and its median seconds per epoch.

    python benchmarks/busy_threads.py [--epochs 3] [--settle 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, train_seconds

import kaizen

SECOND_JOB = """
import torch
torch.set_num_threads({threads})
a = torch.randn(512, 512)
while True:
    a = (a @ a).clamp_(-1, 1)
"""


def uptime() -> str:
    """The machine's load averages, as `uptime` prints them."""
    return "load average: " + ", ".join(f"{load:.2f}" for load in os.getloadavg())


def train(threads: str, epochs: int, runs_dir: Path) -> tuple[float, dict]:
    """Train the default job in a fresh process; return (median s/epoch, meta.json's threads record)."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    args = [sys.executable, "-m", "kaizen", "train", "-q", "--set", f"train.epochs={epochs}"]
    args += ["--set", f"log.runs_dir={runs_dir}", "--set", "train.device=cpu"]
    if threads != "unset":
        args += ["--set", f"train.threads={threads}"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    run = kaizen.load_run(done.stdout.strip().splitlines()[-1])
    return statistics.median(train_seconds(run.metrics())), run.meta.get("threads", {"count": threads, "why": "?"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds the second job runs before a row")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(machine())
    print(f"{'machine':<22} {'train.threads':<14} {'used':>4}  {'s/epoch':>8}  load before  (why)")
    with tempfile.TemporaryDirectory() as folder:
        for busy in (False, True):
            job = None
            if busy:
                code = SECOND_JOB.format(threads=cores)
                job = subprocess.Popen([sys.executable, "-c", code])
                time.sleep(args.settle)  # let the load average see it
            try:
                for threads in (str(cores), "unset", "1"):
                    before = uptime()
                    seconds, record = train(threads, args.epochs, Path(folder))
                    where = "beside a second job" if busy else "alone"
                    print(
                        f"{where:<22} {threads:<14} {record['count']:>4}  {seconds:>8.2f}  {before}  "
                        f"({record['why']})",
                        flush=True,
                    )
            finally:
                if job is not None:
                    job.terminate()
                    job.wait()


if __name__ == "__main__":
    main()
