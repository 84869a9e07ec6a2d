"""Time one 12-run compare with --workers 1 (all cores' threads, then one thread) and --workers 2; print the speedup.

The compare: 4 normalisations × 3 seeds of seed 003's conv_net, 10 epochs on the bundled digits set. The machine's
load average is printed before and after, since other work on the machine slows both runs.

    python scripts/compare_speedup.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETS = ["model.preset=conv_net", "model.dropout=0", "train.epochs=10", "log.plots=false"]


def seconds_for(workers: int, out: Path, threads: int | None = None) -> float:
    """Wall time of the compare with `workers` worker processes (and at most `threads` threads a run)."""
    name = f"workers{workers}" + (f"-threads{threads}" if threads else "")
    command = [sys.executable, "-m", "kaizen", "compare", "--vary", "model.norm=none,batch,layer,instance"]
    command += ["--seeds", "3", "--workers", str(workers), "--out", str(out / name)]
    sets = SETS + ([f"train.threads={threads}"] if threads else [])
    command += [option for item in sets for option in ("--set", item)]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the two studies here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
        cores = os.cpu_count() or 1
        one = seconds_for(1, out)
        print(f"--workers 1 ({cores} threads): {one:.1f}s")
        one_thread = seconds_for(1, out, threads=1)
        print(f"--workers 1 --set train.threads=1: {one_thread:.1f}s")
        two = seconds_for(2, out)
        print(f"--workers 2 ({max(1, cores // 2)} thread(s) each): {two:.1f}s")
        print(f"load after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"speedup of --workers 2: {one / two:.2f}x over --workers 1, {one_thread / two:.2f}x over one thread"
        )


if __name__ == "__main__":
    main()
