"""One training session, as `kaizen train`, `kaizen.train` and `kaizen.resume` start it: a new run or a resumed
one, in this process or in N data-parallel processes (torch's launcher running `python -m kaizen train` N
times, each joining the process group in `fit`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.track import rundir
from kaizen.track.progress import Reporter
from kaizen.training import distributed
from kaizen.training.loop import fit, resolve_device
from kaizen.training.resume import resume_config


def run_session(
    cfg: Config | None = None,
    *,
    resume: Path | None = None,
    overrides: list[str] | None = None,
    devices: int | None = None,
    reporter: Reporter | None = None,
    metrics: dict[str, Callable[[Any, Any], float]] | None = None,
    run_dir: Path | None = None,
    quiet: bool = False,
) -> Path | None:
    """Train `cfg` (with `overrides`), or continue the run `resume` (with the `overrides` a resume allows), and
    return the run directory; None on a data-parallel process that does not write.

    `devices` N > 1 starts N processes on this machine and waits for them; the run directory is made here first,
    so it is known to the caller, and the processes' rank 0 reports as `kaizen train [--quiet]` does. `run_dir`
    is that directory, as the launched processes receive it.
    """
    reporter = reporter or Reporter(enabled=False)
    if resume is not None:
        if cfg is not None:
            raise KaizenError("--resume continues a run with its own config.yaml; drop --config")
        from kaizen.run import load_run

        run = load_run(resume)
        cfg = resume_config(run.config, overrides)  # only keys that cannot change the steps already taken
        run_dir = run.path
    else:
        cfg = (cfg or Config()).override(overrides) if overrides else (cfg or Config())
    if devices is not None:
        distributed.check_devices(devices, resolve_device(cfg.train.device), cfg.train.batch_size)
        if devices > 1:
            return _launch(cfg, devices, resume, overrides, run_dir, quiet)
    return fit(cfg, run_dir=run_dir, resume=resume is not None, reporter=reporter, metrics=metrics)


def _launch(
    cfg: Config,
    devices: int,
    resume: Path | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    quiet: bool,
) -> Path:
    """The same session in `devices` processes: a resumed run by its path, a new one by its resolved config
    written to a file they all read, into a run directory made here."""
    if resume is not None:
        rundir.check_writable(resume)  # before any process starts
        distributed.launch(devices, distributed.worker_args(None, overrides, resume, None, quiet))
        return resume
    if run_dir is None:
        rundir.check_writable(cfg.log.runs_dir)  # says what is in the way, before anything is made
        run_dir = rundir.new_run_dir(cfg.log.runs_dir, cfg.run_name())
    with tempfile.TemporaryDirectory(prefix="kaizen-launch-") as folder:
        config_path = Path(folder) / "config.yaml"
        config_path.write_text(cfg.to_yaml())
        distributed.launch(devices, distributed.worker_args(config_path, None, None, run_dir, quiet))
    return run_dir
