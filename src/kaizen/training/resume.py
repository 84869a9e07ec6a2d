"""What `--resume` may change: the keys that cannot alter the steps already taken, and nothing else.

A resumed run continues the checkpoint's training, so its config.yaml must stay the config it trained with:
more epochs, logging, threads and checkpoint frequency may change (meta.json's `resumed` history records each
change with the epoch it took effect); any other key is refused with one line naming it. More epochs are
refused too when the learning-rate schedule spreads over `train.epochs` (cosine, one-cycle, cyclic): the
epochs already trained followed another curve than the longer run would have.
"""

from __future__ import annotations

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.registry import SCHEDULES
from kaizen.track.rundir import changed_keys

# keys a resume may change; a trailing dot takes the whole section
RESUMABLE = ("train.epochs", "train.threads", "train.eval_batch_size", "checkpoint.every", "log.")
# where the schedule's shapes are compared: every quarter epoch of the epochs both lengths share
_SAMPLES_PER_EPOCH = 4


def resumable(key: str) -> bool:
    """Whether `--resume --set key=…` may change `key`."""
    return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE)


def resume_config(cfg: Config, overrides: list[str] | None) -> Config:
    """The config a resumed run continues with: `cfg` (its config.yaml) with `overrides`, or a KaizenError
    naming the first override that would make config.yaml say what the run did not train with."""
    if not overrides:
        return cfg
    new = cfg.override(overrides)
    for key, (old, value) in changed_keys(cfg.to_dict(), new.to_dict()).items():
        if not resumable(key):
            raise KaizenError(
                f"--resume cannot change {key} ({old} -> {value}): the checkpoint trained with {old}; "
                f"keys a resume may change: {', '.join(RESUMABLE)}; start a new run for another {key}"
            )
    if new.train.epochs != cfg.train.epochs:
        _check_schedule_extends(cfg, new.train.epochs)
    return new


def _check_schedule_extends(cfg: Config, epochs: int) -> None:
    shape = SCHEDULES.get(cfg.schedule.name)
    shared = min(cfg.train.epochs, epochs)
    for sample in range(shared * _SAMPLES_PER_EPOCH + 1):
        epoch = sample / _SAMPLES_PER_EPOCH
        if shape(epoch, cfg.schedule, cfg.train.epochs, 0.0) != shape(epoch, cfg.schedule, epochs, 0.0):
            raise KaizenError(
                f"--resume cannot change train.epochs from {cfg.train.epochs} to {epochs} with "
                f"schedule.name={cfg.schedule.name}: its rate spreads over train.epochs, so the epochs already "
                f"trained followed another curve (they differ from epoch {epoch:g}); train a new run with "
                f"--set train.epochs={epochs}"
            )
