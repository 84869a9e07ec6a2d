"""SIGTERM handled as Ctrl-C: what `docker stop`, Slurm, systemd and CI send ends a run as an interrupt does.

Python turns SIGINT into KeyboardInterrupt, and every command already records that as a stop (meta.json says
"stopped", the last checkpoint is kept, the run resumes). SIGTERM by default kills the process with nothing
recorded; `sigterm_as_interrupt` makes it raise KeyboardInterrupt too, so both take the same path.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt in the main thread. Does nothing in another thread, or
    where SIGTERM already has a handler of its own (the caller's, or a study worker's)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code() -> int:
    """The exit status of a process ended by an interrupt: 143 after SIGTERM (128 + 15, as if killed by it),
    else 130 (Ctrl-C)."""
    return 128 + signal.SIGTERM if signal.SIGTERM in _received else 130
