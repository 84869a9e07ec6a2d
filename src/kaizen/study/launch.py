"""Choosing where a study's runs execute: `local` worker processes (`backends`) or Ray tasks (`ray_backend`).

Both backends import the shared run machinery from `backends`; only this module knows both, so there is no
import circle between them.
"""

from __future__ import annotations

from kaizen.errors import KaizenError
from kaizen.study.backends import Backend, LocalBackend

BACKENDS = ("local", "ray")


def check_backend(name: str, address: str | None = None) -> None:
    """KaizenError unless `name` is a known backend whose requirements are met (raises what `open_backend`
    would, without connecting to anything)."""
    open_backend(name, address).close()


def open_backend(name: str, address: str | None = None) -> Backend:
    """The backend called `name`, checked now (Ray installed, the address answering) so that bad input fails
    before anything is written; it connects only when it first places runs."""
    if name not in BACKENDS:
        raise KaizenError(f"--backend must be {' or '.join(BACKENDS)}, not '{name}'")
    if name == "local":
        if address is not None:
            raise KaizenError("--address applies only to --backend ray")
        return LocalBackend()
    from kaizen.study.ray_backend import RayBackend  # Ray is optional: imported only when asked for

    return RayBackend(address)
