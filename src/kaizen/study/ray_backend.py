"""The Ray backend (`--backend ray [--address ADDR]`, needs `pip install "kaizen[ray]"`): every run a Ray task.

Each task asks for `train.threads` CPUs (1 when unset) and, when the run trains on CUDA, 1/W of a GPU with
W = --workers (default WORKERS_PER_GPU), so W small runs share each GPU. A task trains into the run
directory the study gave it, so the cluster's nodes must see the study directory at the same path (a shared
filesystem); relative paths in the config (data.root, transfer.init_from) resolve against the directory
the command was started in, on every node.

Without --address a local Ray instance is started for the study and stopped after it; with --address the
study connects to that cluster (host:port of its head, or ray://host:port for Ray Client) and leaves it
running. The address is probed with a short socket timeout first: ray.init would otherwise retry for a long
time before saying that nothing answers.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from kaizen.errors import KaizenError
from kaizen.study.backends import (
    STOPPED,
    WORKERS_PER_GPU,
    Placement,
    forget_interrupt,
    train_job,
    usable_cores,
    uses_cuda,
)

PROBE_SECONDS = 3.0
INSTALL = 'pip install "kaizen[ray]"'


def import_ray():
    """The ray module, or KaizenError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise KaizenError(f"--backend ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host:port`; None for `auto` (Ray finds the local cluster)."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise KaizenError(
            f"--address '{address}' is not host:port (e.g. 127.0.0.1:6379), ray://host:port or auto"
        )
    return host, int(port)


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """KaizenError unless something accepts a TCP connection at `address` within `timeout` seconds."""
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise KaizenError(
            f"--address {address}: nothing answers at {host}:{port} ({reason}); start Ray there "
            f"(ray start --head --port={port}) or leave out --address to start a local Ray instance"
        ) from None


def ray_train_job(job: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: train one run from the directory the study was started in (relative paths keep their
    meaning). Ray reuses worker processes, so a stop recorded by an earlier task must not carry over."""
    forget_interrupt()
    if os.path.isdir(job["cwd"]):
        os.chdir(job["cwd"])
    return train_job(job)


class RayBackend:
    """Runs as Ray tasks on a cluster (`address`) or on a local Ray instance started for the study."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.ray = import_ray()
        if address is not None:
            probe(address)
        self.address = address
        self.started = False  # connected (or started Ray) here, so close() disconnects

    def connect(self) -> None:
        """Connect to the cluster, or start a local instance; an already initialised Ray is used as it is."""
        ray = self.ray
        if ray.is_initialized() or self.started:
            return
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # errors come back as results
        try:
            if self.address is None:
                ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, **quiet)
            else:
                # Something answered the probe; if it is not Ray's GCS, give up after ~5 s, not Ray's ~20 s.
                os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
                ray.init(address=self.address, **quiet)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError ...
            where = f"Ray at {self.address}" if self.address else "a local Ray instance"
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if "AuthenticationError" in repr(error.__cause__) or "InvalidAuthToken" in str(error.__cause__):
                first += (
                    " (the cluster wants its token: set RAY_AUTH_MODE=token and put the token in "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN)"
                )
            raise KaizenError(f"cannot connect to {where}: {first}") from None
        self.started = True

    def place(self, configs: list[dict[str, Any]], workers: int | None, threads: int | None) -> Placement:
        self.connect()
        resources = self.ray.cluster_resources()
        cluster_gpus = resources.get("GPU", 0)
        if any(config["train"]["device"] == "cuda" for config in configs) and not cluster_gpus:
            raise KaizenError("train.device = 'cuda' but the Ray cluster has no GPUs; use auto or cpu")
        cuda = any(uses_cuda(config, cluster_gpus > 0) for config in configs)
        per_gpu = workers or WORKERS_PER_GPU
        cpus = threads or 1
        where = f"Ray ({self.address or 'local instance'}, {resources.get('CPU', 0):g} CPUs"
        where += f", {cluster_gpus:g} GPUs)" if cluster_gpus else ")"
        where += f": {cpus} CPU(s)" + (f" + 1/{per_gpu} GPU" if cuda else "") + " per run"
        return Placement(per_gpu if cuda else 1, cpus, 1 / per_gpu if cuda else 0.0, int(cluster_gpus), where)

    def run(self, jobs: list[dict[str, Any]], placement: Placement) -> Iterator[dict[str, Any]]:
        ray = self.ray
        task = ray.remote(max_retries=0)(ray_train_job)
        cwd = os.getcwd()
        refs = {}
        for job in jobs:
            gpus = placement.gpu_share if uses_cuda(job["config"], placement.gpus > 0) else 0
            ref = task.options(num_cpus=placement.threads, num_gpus=gpus).remote({**job, "cwd": cwd})
            refs[ref] = job
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    yield self._result(ref, refs[ref])
        except KeyboardInterrupt:
            # Ctrl-C: a running task gets KeyboardInterrupt (its run records itself as stopped), queued ones
            # never start; wait a little for the running ones to write that down.
            for ref in waiting:
                ray.cancel(ref)
            ray.wait(waiting, num_returns=len(waiting), timeout=10)
            raise

    def _result(self, ref: Any, job: dict[str, Any]) -> dict[str, Any]:
        ray = self.ray
        base = {"variant": job["variant"], "seed": job["seed"], "path": job["path"], "seconds": 0.0}
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return {**base, "status": "stopped", "error": STOPPED}
        except ray.exceptions.RayError as error:  # the worker died, the node went away, ...
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return {**base, "status": "failed", "error": f"Ray task failed: {type(error).__name__}: {first}"}

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()  # stops a local instance started here; a cluster only loses this driver
            self.started = False
