"""The monitor: picks the best epoch (for best.pt) and decides early stopping."""

from __future__ import annotations

import math
from typing import Any

from kaizen.config import EarlyStopConfig


class Monitor:
    """Tracks `early_stop.monitor`; `update()` says whether this epoch is the best so far."""

    def __init__(self, cfg: EarlyStopConfig, has_val: bool):
        self.cfg = cfg
        # Without a validation split, a val_* monitor falls back to the training metric of the same kind.
        self.name = (
            cfg.monitor if has_val or not cfg.monitor.startswith("val_") else "train_" + cfg.monitor[4:]
        )
        mode = cfg.mode if cfg.mode != "auto" else ("min" if self.name.endswith("loss") else "max")
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.wait = 0
        self.should_stop = False

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch's metrics; return True when it is the new best."""
        value = self.sign * metrics[self.name]
        if value < self.best - self.cfg.min_delta or self.best_epoch is None:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_metrics = {key: round(number, 6) for key, number in metrics.items()}
            return True
        self.wait += 1
        if self.cfg.enabled and self.wait > self.cfg.patience:
            self.should_stop = True
        return False

    def state_dict(self) -> dict[str, Any]:
        """State needed to resume exactly."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "wait": self.wait,
            "should_stop": self.should_stop,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.best_metrics = dict(state["best_metrics"])
        self.wait = int(state["wait"])
        self.should_stop = bool(state["should_stop"])
