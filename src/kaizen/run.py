"""A finished (or running) run, read back from its directory: config, meta, metrics, summary, model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.track import rundir


@dataclass
class Run:
    """A run directory. `model()` rebuilds the network with the weights the run ended with."""

    path: Path
    config: Config
    meta: dict[str, Any]

    @property
    def status(self) -> str:
        """running | done | failed | stopped, or "running or killed: no live process" when the process that
        wrote "running" is gone (kill -9 leaves no one to record the end)."""
        return rundir.status_of(self.meta)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json (empty while the run has not finished)."""
        path = self.path / "summary.json"
        return rundir.read_json(path) if path.is_file() else {}

    def metrics(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv: epoch, split, loss, acc, lr, seconds."""
        return rundir.read_metrics(self.path / "metrics.csv")

    def checkpoint(self, name: str | None = None, device: torch.device | str = "cpu") -> dict[str, Any]:
        """Load a checkpoint: `name` (best.pt / last.pt), default the one the run ended with."""
        name = name or self.summary.get("checkpoint", "best.pt")
        return rundir.load_checkpoint(self.path / "checkpoints" / name, device)

    def model(self, name: str | None = None, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
        """Return (model in eval mode, checkpoint record with input_shape, num_classes, class_names, mean, std)."""
        from kaizen.nn import build_model
        from kaizen.training.loop import _load_model_state
        from kaizen.training.multitask import attach_tasks

        name = name or self.summary.get("checkpoint", "best.pt")
        state = self.checkpoint(name, device)
        model = build_model(
            self.config.model, self.config.init, tuple(state["input_shape"]), state["num_classes"]
        )
        model = attach_tasks(model, self.config.model.tasks, tuple(state["input_shape"]))
        _load_model_state(model, state, self.path / "checkpoints" / name)
        return model.to(device).eval(), state


def load_run(path: str | Path) -> Run:
    """Open a run directory; KaizenError when the folder is not a kaizen run."""
    path = Path(path)
    if not path.is_dir():
        raise KaizenError(f"run directory not found: {path}")
    if not (path / "config.yaml").is_file() or not (path / "meta.json").is_file():
        raise KaizenError(f"{path} is not a kaizen run (no config.yaml / meta.json)")
    return Run(path=path, config=Config.load(path / "config.yaml"), meta=rundir.read_json(path / "meta.json"))
