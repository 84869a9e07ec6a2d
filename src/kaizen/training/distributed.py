"""Data-parallel training: one process per device, each training on its slice of every global batch.

Processes are started by PyTorch's elastic launcher, either `torchrun` (across nodes) or `kaizen train
--devices N` (this machine; `launch` below drives the same launcher). Every process loads the whole
device-resident dataset, walks the same seeded permutation and takes its contiguous slice of each global batch
(`train.batch_size`); DistributedDataParallel averages the gradients, so N processes take the step one process
would take with the same global batch. NCCL joins CUDA processes, Gloo CPU ones.

The loop talks to a `Group`: with one process every method is a no-op, so the single-process path is unchanged.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kaizen.errors import KaizenError

# DDP's switch for "no buffer broadcast before each forward" (renamed in torch 2.13; the old name warns)
_NO_BUFFER_BROADCAST = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def launched() -> bool:
    """Whether this process is one of several started by torchrun (or `--devices`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class Group:
    """This process's place among the data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""
    owns_group: bool = False  # this module initialised the process group, so it also ends it
    # the DDP wrapper of the step's forward: it holds the process group, so `close` lets go of it first
    wrapped: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What summary.json and meta.json record under "distributed"."""
        return {"world_size": self.world_size, "backend": self.backend}

    # --- batches ----------------------------------------------------------------------------------
    def part(self, n: int) -> slice:
        """This process's contiguous share of `n` items (shares differ by at most one)."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch's indices (all of them with one process)."""
        return index[self.part(len(index))] if self.enabled else index

    def loss_scale(self, local: int, global_: int) -> float:
        """The factor that makes DDP's average of per-process mean losses the mean over the global batch.

        DDP averages gradients over processes; with unequal slices (a global batch not divisible by the
        process count) each process's mean is weighted by its share, so the result equals one process's mean.
        """
        return local * self.world_size / global_

    def min_batch(self) -> int:
        """The smallest global batch every process can train on (batch norm needs two examples each)."""
        return 2 * self.world_size

    # --- the model --------------------------------------------------------------------------------
    def parallel(self, forward: nn.Module) -> Callable[[], Callable[[torch.Tensor], torch.Tensor]]:
        """A function returning the step's forward: `forward` itself, or DDP around it.

        Call it at each epoch start: DDP syncs only the parameters that required gradients when it was built,
        so it is rebuilt when gradual unfreezing changes that set.
        """
        if not self.enabled:
            return lambda: forward
        wrapped = self.wrapped

        def current() -> Callable[[torch.Tensor], torch.Tensor]:
            trainable = tuple(parameter.requires_grad for parameter in forward.parameters())
            if wrapped.get("trainable") != trainable:
                device_ids = [torch.cuda.current_device()] if self.backend == "nccl" else None
                # Batch-norm statistics stay per process during the epoch and are averaged at its end
                # (`sync_buffers`), instead of a broadcast from rank 0 before every step.
                wrapped["ddp"] = nn.parallel.DistributedDataParallel(
                    forward, device_ids=device_ids, **_NO_BUFFER_BROADCAST
                )
                wrapped["trainable"] = trainable
            return wrapped["ddp"]

        return current

    def sync_buffers(self, model: nn.Module) -> None:
        """Average floating-point buffers (batch-norm running statistics) over processes; others from rank 0."""
        if not self.enabled:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(self.world_size)
            else:
                dist.broadcast(buffer, src=0)

    # --- metrics and random streams ----------------------------------------------------------------------
    def sum(self, values: Sequence[float | torch.Tensor], device: torch.device) -> list[float]:
        """The sums of `values` over all processes (one all-reduce; a sync point), as Python floats."""
        packed = torch.stack(
            [torch.as_tensor(value, device=device).detach().to(torch.float64) for value in values]
        )
        if self.enabled:
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return packed.tolist()

    def rng_states(self) -> list[torch.Tensor] | None:
        """Every process's CPU random state (dropout, augmentation), for the checkpoint; None alone."""
        if not self.enabled:
            return None
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, torch.get_rng_state())
        return states

    def seed_rank(self, seed: int, *stream: int) -> None:
        """Give ranks other than 0 their own reproducible random stream (rank 0 keeps the one-process one)."""
        if self.rank > 0:
            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank, *stream]).generate_state(1)[0]))

    def restore_rng(self, state: dict[str, Any], seed: int, epoch: int) -> None:
        """Set this process's random state from a checkpoint's `{"cpu": state, "ranks": [state, ...]}` (its own
        when saved by as many processes)."""
        torch.set_rng_state(state["cpu"].cpu())
        states = state.get("ranks")
        if states is not None and len(states) == self.world_size:
            torch.set_rng_state(states[self.rank].cpu())
        else:
            self.seed_rank(seed, epoch)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (only if `setup` joined it).

        DDP's reducer holds the group: left to the interpreter's teardown at exit, the group's Gloo threads
        could be destroyed after the interpreter, which aborts the process ("terminate called without an
        active exception") and makes the launcher end the other processes. So the wrapper goes first, while
        the interpreter is whole, and the group is then destroyed here.
        """
        self.wrapped.clear()
        gc.collect()  # DDP's hooks form reference cycles: collect them now, not at exit
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device: torch.device) -> tuple[Group, torch.device]:
    """Join the process group torchrun describes (env:// variables) and return it with this process's device.

    One process (no WORLD_SIZE > 1 and no group already initialised) gets `Group()` and `device` unchanged.
    """
    if not (launched() or (dist.is_available() and dist.is_initialized())):
        return Group(), device
    if device.type == "mps":
        raise KaizenError(
            "data-parallel training runs on CUDA (NCCL) or CPU (Gloo), not MPS; use train.device=cpu"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise KaizenError(
                f"process {local_rank} on this node has no GPU: {torch.cuda.device_count()} visible; "
                "start at most that many processes per node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    group = Group(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=dist.get_backend(),
        owns_group=owns,
    )
    return group, device


# --- kaizen train --devices N ----------------------------------------------------------------------------


def check_devices(devices: int, device: torch.device, batch_size: int) -> None:
    """Raise one line if `devices` processes cannot train on `device` here."""
    if devices < 1:
        raise KaizenError(f"--devices must be at least 1, not {devices}")
    if launched():
        raise KaizenError(
            "--devices starts its own processes; under torchrun leave it out (--nproc-per-node sets the count)"
        )
    if devices == 1:
        return
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if devices > count:
            raise KaizenError(
                f"--devices {devices}, but {count} CUDA device{'s' * (count != 1)} "
                f"{'are' if count != 1 else 'is'} visible"
            )
    elif device.type == "cpu":
        cores = cpu_cores()
        if devices > cores:
            raise KaizenError(
                f"--devices {devices}, but this machine has {cores} CPU core{'s' * (cores != 1)}; "
                "on CPU each process needs a core of its own"
            )
    else:
        raise KaizenError(
            f"--devices needs CUDA (NCCL) or CPU (Gloo), not {device.type}; use --set train.device=cpu"
        )
    if batch_size < 2 * devices:
        raise KaizenError(
            f"train.batch_size {batch_size} is too small for {devices} processes: each trains on its slice of "
            f"every batch; use at least {2 * devices}"
        )


def launch(devices: int, args: list[str]) -> None:
    """Run `python -m kaizen <args>` as `devices` data-parallel processes on this machine, via torch's launcher.

    Rank 0 prints the progress and the result. A failing process ends the others; when it failed with a kaizen
    error (exit code 2, its one line already printed) this exits 2 too.
    """
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.Logger.manager.loggerDict):  # the launcher's own notices: the ranks speak
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=devices,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        logs_specs=DefaultLogsSpecs(),
    )
    try:
        elastic_launch(config, sys.executable)("-m", "kaizen", *args)
    except SignalException:
        raise KeyboardInterrupt from None
    except ChildFailedError as failed:
        codes = {rank: failure.exitcode for rank, failure in failed.failures.items()}
        if 2 in codes.values():
            raise SystemExit(2) from None
        # the process that failed first: an exit code or a crash (SIGABRT, SIGSEGV) before the launcher's SIGTERM
        rank, code = min(codes.items(), key=lambda item: (item[1] == -signal.SIGTERM, item[1] <= 0, item[0]))
        how = f"exit code {code}" if code >= 0 else f"signal {_signal_name(-code)}"
        raise KaizenError(
            f"training process {rank} of {devices} failed with {how} (its output is above)"
        ) from None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# How long a process other than rank 0 waits before reporting an error (the launcher ends it sooner when rank 0
# failed too).
ERROR_PAUSE_SECONDS = 10


def error_prefix() -> str:
    """How a process starts its one-line error: "" on rank 0 (or alone), else "rank N: " after a pause.

    The pause lets an error that every process hits (a missing data file, say) be reported once: rank 0 exits
    first and the launcher ends the others before they speak. On a loaded machine (load average 18 on 2 cores)
    rank 0's exit took more than 3 s to reach the launcher and both ranks spoke, hence ERROR_PAUSE_SECONDS.
    """
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 or not launched():
        return ""
    time.sleep(ERROR_PAUSE_SECONDS)
    return f"rank {rank}: "


def worker_args(
    config: Path | None, overrides: list[str] | None, resume: Path | None, into: Path | None, quiet: bool
) -> list[str]:
    """The `kaizen train` arguments each launched process gets (the same session, without --devices): a config
    file and the run directory made for it (`into`), or the run to resume, with its overrides."""
    args = ["train"]
    if config is not None:
        args += ["--config", str(config)]
    for override in overrides or []:
        args += ["--set", override]
    if resume is not None:
        args += ["--resume", str(resume)]
    if into is not None:
        args += ["--into", str(into)]
    if quiet:
        args.append("--quiet")
    return args
