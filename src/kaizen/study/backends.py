"""Where the runs of a study execute: the seam between `run_plan` and the machines.

A backend gets the study's pending runs as plain data (`job`: variant, seed, run directory, resolved config)
and yields each run's result as it finishes; everything else (resume, lock, failure isolation, reporting,
progress) is `run_plan`'s and the same for every backend.

- `local` (the default): worker processes on this machine. Every run trains with `train.threads` threads
  (1 when unset), whatever the layout; on CPU the default is cores // threads workers. When the runs train on CUDA, the default is WORKERS_PER_GPU processes per GPU
  (capped at the cores): a small model leaves most of a GPU idle, so several runs share it; the runs are
  spread round-robin over the GPUs.
- `ray` (`kaizen[ray]`): every run a Ray task with its resources (`kaizen.study.ray_backend`).

`kaizen.study.launch` chooses between them; this module knows nothing of Ray, so the two never import each
other's way round.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kaizen.config import Config
from kaizen.errors import KaizenError

# Runs that share one GPU by default: small models (the presets on 28×28 digits) use a fraction of a GPU each.
WORKERS_PER_GPU = 4


@dataclass(frozen=True)
class Placement:
    """How the pending runs are laid out: `workers` runs at once (local) or runs per GPU (ray), `threads` CPU
    threads per run, `gpu_share` the fraction of a GPU each CUDA run asks for (0: the runs train on CPU),
    `gpus` the GPUs the runs are spread over, `where` the layout in words."""

    workers: int
    threads: int
    gpu_share: float = 0.0
    gpus: int = 0
    where: str = ""


class Backend(Protocol):
    """Runs a study's jobs: `place` decides the resources (before the jobs are built, as their configs carry
    the thread count), `run` yields one result per job as each finishes, `close` lets go of the machines."""

    name: str

    def place(self, configs: list[dict[str, Any]], workers: int | None, threads: int | None) -> Placement: ...

    def run(self, jobs: list[dict[str, Any]], placement: Placement) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def usable_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def uses_cuda(config: dict[str, Any], cuda_available: bool) -> bool:
    """Whether a run with this resolved config trains on CUDA where CUDA is (or is not) available."""
    device = config["train"]["device"]
    return device == "cuda" or (device == "auto" and cuda_available)


class LocalBackend:
    """Worker processes on this machine (one run in this process when there is one worker)."""

    name = "local"

    def place(self, configs: list[dict[str, Any]], workers: int | None, threads: int | None) -> Placement:
        cores = usable_cores()
        gpus = (
            _local_gpus() if any(config["train"]["device"] in ("auto", "cuda") for config in configs) else 0
        )
        cuda = gpus > 0 and any(uses_cuda(config, True) for config in configs)
        # every run trains with the config's thread count (1 when unset) whatever the layout: the thread count
        # changes a run's numbers, and a study must not depend on --workers or on how it was resumed
        per_run = threads or 1
        default = min(cores, WORKERS_PER_GPU * gpus) if cuda else max(1, cores // per_run)
        workers = max(1, min(workers or default, cores, len(configs) or 1))
        where = f"{workers} worker(s) × {per_run} thread(s)"
        if cuda:
            where += f" sharing {gpus} GPU(s)" if workers > gpus else f" on {gpus} GPU(s)"
        share = min(1.0, gpus / workers) if cuda else 0.0
        return Placement(workers, per_run, share, gpus if cuda else 0, where)

    def run(self, jobs: list[dict[str, Any]], placement: Placement) -> Iterator[dict[str, Any]]:
        if placement.gpus > 1:  # round-robin over the GPUs; a CPU run ignores it
            for index, job in enumerate(jobs):
                job["gpu"] = index % placement.gpus
        if placement.workers == 1:
            return _run_in_process(jobs)
        return _run_in_pool(jobs, placement.workers, placement.threads)

    def close(self) -> None:
        pass


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------------------- one run, anywhere

STOPPED = "interrupted; run the same command again to resume"
# A worker's state, for Ctrl-C: a run in progress stops (fit records it as stopped); runs queued after it
# return at once instead of starting.
_worker = {"running": False, "interrupted": False}


def forget_interrupt() -> None:
    """Clear a stop recorded by an earlier run in this process (Ray reuses its worker processes)."""
    _worker["interrupted"] = False


def train_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one run of a study (in a worker process, a Ray task or in-process); never raises for a failing
    run. Returns variant, seed, path, status (done, failed, stopped), seconds and error."""
    from kaizen.study.examples import write_test_correct
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    result = {
        "variant": job["variant"],
        "seed": job["seed"],
        "path": job["path"],
        "status": "done",
        "seconds": 0.0,
    }
    if _worker["interrupted"]:
        return {**result, "status": "stopped", "error": STOPPED}
    began = time.perf_counter()
    _worker["running"] = True
    try:
        if job.get("gpu") is not None:
            import torch

            torch.cuda.set_device(job["gpu"])
        fit(Config.from_dict(job["config"]), run_dir=Path(job["path"]), reporter=Reporter(enabled=False))
        if not job["config"]["model"].get("tasks") and job["config"]["train"].get("score_test", True):
            # the paired test over test images needs them
            with contextlib.suppress(
                KaizenError, OSError
            ):  # the run is done; the report notes a missing file
                write_test_correct(job["path"])
    except KaizenError as error:
        result.update(status="failed", error=str(error))
    except KeyboardInterrupt:
        _worker["interrupted"] = True
        result.update(status="stopped", error=STOPPED)
    except Exception as error:  # one broken run must not stop the study; its error is recorded
        result.update(status="failed", error=f"{type(error).__name__}: {error}")
    finally:
        _worker["running"] = False
    result["seconds"] = round(time.perf_counter() - began, 3)
    return result


# ------------------------------------------------------------------------------------ local processes


def _run_in_process(jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    import torch

    threads = torch.get_num_threads()
    try:
        for job in jobs:
            result = train_job(job)
            yield result
            if result["status"] == "stopped":
                raise KeyboardInterrupt
    finally:
        torch.set_num_threads(threads)  # fit set the study's thread count in this process


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGTERM, _on_interrupt)  # docker stop, Slurm, systemd: as Ctrl-C
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()


# How often a worker looks for its parent, and the most it then waits for its run to be recorded as stopped.
PARENT_POLL_SECONDS = 0.5
ORPHAN_GRACE_SECONDS = 120.0


def _end_with_parent(parent: int) -> None:
    """A worker whose study process died (kill -9 gives it no chance to end its pool) stops too: its run is
    recorded as stopped, as on Ctrl-C, and the worker exits instead of training on with no one to report to.

    It exits once the run has recorded its stop (not after a fixed pause: on a loaded machine recording can
    take longer than any pause chosen on an idle one), or after ORPHAN_GRACE_SECONDS at the most."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGINT)
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while _worker["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(1)


def _on_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C in a worker: stop the run in progress; between runs, only remember it (no traceback). A second
    Ctrl-C (the terminal's and the main process's) must not break the first one's recording of the stop."""
    first = not _worker["interrupted"]
    _worker["interrupted"] = True
    if first and _worker["running"]:
        raise KeyboardInterrupt


def _run_in_pool(jobs: list[dict[str, Any]], workers: int, threads: int) -> Iterator[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    try:
        futures: dict[Future, dict[str, Any]] = {executor.submit(train_job, job): job for job in jobs}
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in done:
                yield _result_of(future, futures[future])
    except KeyboardInterrupt:
        # Pass Ctrl-C on to the workers (a terminal sends it to them too; `kill -INT` reaches only this
        # process): their runs are recorded as stopped and queued runs do not start.
        for child in multiprocessing.active_children():
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGINT)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # no worker outlives the lock


def _result_of(future: Future, job: dict[str, Any]) -> dict[str, Any]:
    base = {"variant": job["variant"], "seed": job["seed"], "path": job["path"], "seconds": 0.0}
    try:
        return future.result()
    except KeyboardInterrupt:  # Ctrl-C reached the worker just after its run ended
        return {**base, "status": "stopped", "error": STOPPED}
    except Exception as error:  # the worker process died (killed, out of memory)
        return {**base, "status": "failed", "error": f"worker process died: {type(error).__name__}: {error}"}
