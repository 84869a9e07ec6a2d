"""How many CPU threads a run computes with when `train.threads` is unset: the cores that are actually free.

torch's own default is one thread per core. On a machine that is also running another job, those threads
contend with it for the same cores, and every synchronisation waits for the slowest: a 2-core machine beside a
second job trained the default digits CNN some 50x slower than with one thread. So the default counts the cores
this process may use (its affinity), takes off the ones the rest of the machine is using (the 1-minute load
average), and keeps at least one.
"""

from __future__ import annotations

import os

import torch

from kaizen.training.distributed import cpu_cores


def free_threads() -> tuple[int, str]:
    """(threads, why): the cores free for this process (at least 1), and a few words saying how they were
    counted, for meta.json and the run's start line."""
    cores = cpu_cores()
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():  # the user (or a scheduler) chose already
        count = max(1, int(os.environ["OMP_NUM_THREADS"]))
        return count, f"OMP_NUM_THREADS={count}"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): every core of the affinity
        return cores, f"{cores} cores, load unknown"
    machine = os.cpu_count() or cores
    free = min(cores, int(machine - load + 0.5))  # the load average counts the machine's runnable threads
    if free < 1:
        return 1, f"no core free: 1-minute load average {load:.2f} on {machine} cores; 1 thread"
    return free, f"{free} of {cores} cores free: 1-minute load average {load:.2f} on {machine} cores"


def set_threads(requested: int | None) -> str:
    """Set torch's thread count: `requested` (train.threads) when given, else `free_threads()`; return why."""
    if requested:
        torch.set_num_threads(requested)
        return "train.threads"
    count, why = free_threads()
    torch.set_num_threads(count)
    return why
