"""Learning-rate schedules: one small class computes every group's rate from the step count.

lr(step) = base_lr × warm-up(step) × shape(progress) × plateau_scale. Warm-up composes with any shape;
reduce-on-plateau is a scale that falls when validation loss stalls. Rates are set per step, so cosine and
one-cycle are smooth within an epoch. A shape's registry entry says what the schedule must know of it: its
default decay factor, whether it follows the validation loss, whether it restarts in cycles.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from kaizen.config import ScheduleConfig
from kaizen.errors import KaizenError
from kaizen.registry import SCHEDULES


@SCHEDULES.register("constant", decay=None, on_plateau=False, cycles=False)
def _constant(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    return 1.0


@SCHEDULES.register("step", decay=0.1, on_plateau=False, cycles=False)
def _step(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    return _gamma(cfg) ** math.floor(epoch / cfg.step_epochs)


@SCHEDULES.register("exponential", decay=0.95, on_plateau=False, cycles=False)
def _exponential(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    return _gamma(cfg) ** math.floor(epoch)


@SCHEDULES.register("cosine", decay=None, on_plateau=False, cycles=False)
def _cosine(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    start = min(cfg.warmup_epochs, epochs)
    progress = min(max((epoch - start) / max(epochs - start, 1e-9), 0.0), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("onecycle", decay=None, on_plateau=False, cycles=False)
def _onecycle(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    # Rise from lr/25 to lr over the first 30%, then anneal to lr/1e4 (Smith's one-cycle policy).
    progress = min(epoch / epochs, 1.0)
    if progress < 0.3:
        return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * progress / 0.3))
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (progress - 0.3) / 0.7))


@SCHEDULES.register("cyclic", decay=None, on_plateau=False, cycles=True)
def _cyclic(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    # Cosine annealing with warm restarts, `cycles` equal cycles (snapshot ensembles: Huang et al. 2017).
    length = epochs / cfg.cycles
    progress = min(epoch, epochs - 1e-9) % length / length
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("plateau", decay=0.1, on_plateau=True, cycles=False)
def _plateau(epoch: float, cfg: ScheduleConfig, epochs: int, floor: float) -> float:
    return 1.0  # the plateau scale does the work


def _gamma(cfg: ScheduleConfig) -> float:
    """`schedule.gamma`, else the decay factor the shape's registry entry gives."""
    return cfg.gamma if cfg.gamma is not None else SCHEDULES.traits(cfg.name).decay


class LRSchedule:
    """Sets each parameter group's learning rate; `step()` after every batch, `end_epoch()` after each epoch."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int
    ):
        self.optimizer = optimizer
        self.cfg = cfg
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.shape = SCHEDULES.get(cfg.name)
        traits = SCHEDULES.traits(cfg.name)
        self.on_plateau, self.cycles = traits.on_plateau, traits.cycles
        if self.cycles and epochs % cfg.cycles:
            raise KaizenError(
                f"schedule.cycles = {cfg.cycles} must divide train.epochs = {epochs} (equal cycles, one "
                "snapshot at the end of each)"
            )
        self.steps = 0
        self.plateau_scale = 1.0
        self.plateau_best = math.inf
        self.plateau_wait = 0
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self._apply()

    def factor(self) -> float:
        """The multiplier of every base learning rate at the current step."""
        epoch = self.steps / self.steps_per_epoch
        warm = (
            min(1.0, (self.steps + 1) / (self.cfg.warmup_epochs * self.steps_per_epoch))
            if (self.cfg.warmup_epochs > 0)
            else 1.0
        )
        base = self.optimizer.param_groups[0]["base_lr"]
        floor = min(self.cfg.min_lr / base, 1.0)
        return warm * self.shape(epoch, self.cfg, self.epochs, floor) * self.plateau_scale

    def _apply(self) -> None:
        factor = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = max(
                group["base_lr"] * factor, self.cfg.min_lr if self.on_plateau else 0.0
            )

    def step(self) -> None:
        """Advance one batch."""
        self.steps += 1
        self._apply()

    def end_epoch(self, val_loss: float | None) -> None:
        """Reduce-on-plateau: shrink the scale after `patience` epochs without a better validation loss."""
        if not self.on_plateau or val_loss is None:
            return
        if val_loss < self.plateau_best * (1 - 1e-4):
            self.plateau_best, self.plateau_wait = val_loss, 0
        else:
            self.plateau_wait += 1
            if self.plateau_wait > self.cfg.patience:
                self.plateau_scale *= _gamma(self.cfg)
                self.plateau_wait = 0
        self._apply()

    def cycle_ended(self, epochs_done: int) -> int | None:
        """The number (1-based) of the cycle that ends with epoch `epochs_done`, for a shape with cycles."""
        if not self.cycles or epochs_done % (self.epochs // self.cfg.cycles):
            return None
        return epochs_done // (self.epochs // self.cfg.cycles)

    def current_lr(self) -> float:
        """The learning rate of the first group."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """State needed to resume exactly."""
        return {
            "steps": self.steps,
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_wait": self.plateau_wait,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.steps = int(state["steps"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_wait = int(state["plateau_wait"])
        self._apply()
