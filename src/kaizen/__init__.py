"""kaizen: make image classifiers better, and know why.

import kaizen
cfg = kaizen.Config.load("configs/kaggle_cnn.yaml").override(["optim.lr=3e-3"])
run = kaizen.train(cfg)
print(run.summary["test"]["acc"])
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# One id per kaizen command (or Python session), inherited by the worker processes it starts: what a command
# says once (a data set's skipped files) is said once among all of them (kaizen.data.folder_dataset.warn_once).
os.environ.setdefault("KAIZEN_COMMAND", uuid.uuid4().hex)

if TYPE_CHECKING:
    from kaizen.doctor.findings import Finding
    from kaizen.study.tune import TuneResult

from kaizen.config import Config  # noqa: E402
from kaizen.errors import KaizenError  # noqa: E402
from kaizen.improve import improve  # noqa: E402  (the function: the package imports nothing heavy until called)
from kaizen.run import Run, load_run  # noqa: E402
from kaizen.version import __version__  # noqa: E402


def train(
    cfg: Config | str | Path | None = None,
    overrides: list[str] | None = None,
    quiet: bool = True,
    metrics: dict[str, Callable[[Any, Any], float]] | None = None,
    devices: int | None = None,
) -> Run | None:
    """Train a config (a Config, a YAML path, or None for the default job) and return its Run.

    `metrics` are custom metrics, `{name: fn(model, data) -> float}`, evaluated in inference mode at the end
    of every epoch and logged to TensorBoard (`custom/<name>`) and stats.jsonl (records of kind `custom`).
    `devices` N > 1 trains data-parallel in N processes on this machine (as `kaizen train --devices N`).
    Under torchrun every process calls it; rank 0 gets the Run, the others None.
    """
    from kaizen.track.progress import Reporter
    from kaizen.training.session import run_session

    if cfg is not None and not isinstance(cfg, Config):
        cfg = Config.load(cfg)
    run_dir = run_session(
        cfg,
        overrides=overrides,
        devices=devices,
        reporter=Reporter(enabled=not quiet),
        metrics=metrics,
        quiet=quiet,
    )
    return load_run(run_dir) if run_dir is not None else None


def diagnose(run_dir: str | Path) -> list[Finding]:
    """Diagnose a run: the list of `kaizen.doctor.Finding`s, most severe first (see `kaizen doctor`)."""
    from kaizen.doctor import diagnose as run_doctor

    return run_doctor(run_dir)


def resume(
    run_dir: str | Path, overrides: list[str] | None = None, quiet: bool = True, devices: int | None = None
) -> Run | None:
    """Continue an interrupted run from its last checkpoint (in `devices` processes if N > 1) and return it;
    under torchrun, rank 0 gets the Run, the others None."""
    from kaizen.track.progress import Reporter
    from kaizen.training.session import run_session

    path = run_session(
        resume=Path(run_dir),
        overrides=overrides,
        devices=devices,
        reporter=Reporter(enabled=not quiet),
        quiet=quiet,
    )
    return load_run(path) if path is not None else None


def tune(
    cfg: Config | str | Path | None,
    space: list[str],
    trials: int = 20,
    out_dir: str | Path | None = None,
    storage: str | None = None,
    **options: Any,
) -> TuneResult:
    """Search hyperparameters with Optuna (see `kaizen tune`) and return the `kaizen.study.tune.TuneResult`.

    `space` holds `key=log(lo,hi)`, `float(lo,hi)`, `int(lo,hi)` or `choice(a,b,...)` texts; `trials` is the
    search's total (a resumed study's earlier trials count). `options`: study_name, metric, pruner, seed.
    """
    from kaizen.study.tune import tune as run_search

    if cfg is None:
        cfg = Config()
    elif not isinstance(cfg, Config):
        cfg = Config.load(cfg)
    return run_search(cfg, space, trials, out_dir, storage, **options)


__all__ = ["Config", "KaizenError", "Run", "diagnose", "improve", "load_run", "resume", "train", "tune", "__version__"]
