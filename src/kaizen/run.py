"""A finished (or running) run, read back from its directory: config, meta, metrics, summary, model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.nn import build_model
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
        name = name or self.summary.get("checkpoint", "best.pt")
        state = self.checkpoint(name, device)
        model = build_model(
            self.config.model, self.config.init, tuple(state["input_shape"]), state["num_classes"]
        )
        load_model_state(model, state, self.path / "checkpoints" / name)
        return model.to(device).eval(), state

    def predict(self, images: Any, tta: int = 0) -> Any:
        """Predict image paths (files or folders), PIL images or uint8 arrays with this run's model; returns
        `kaizen.inference.Predictions` (labels, probabilities, class_names, files)."""
        from kaizen.inference import predict_images

        return predict_images([self], images, tta)


def load_run(path: str | Path) -> Run:
    """Open a run directory; KaizenError when the folder is not a kaizen run."""
    path = Path(path)
    if not path.is_dir():
        raise KaizenError(f"run directory not found: {path}")
    if not (path / "config.yaml").is_file() or not (path / "meta.json").is_file():
        raise KaizenError(f"{path} is not a kaizen run (no config.yaml / meta.json)")
    meta = rundir.read_json(path / "meta.json")
    rundir.check_fields(meta, path / "meta.json", rundir.META_FIELDS, required=("status",))
    return Run(path=path, config=Config.load(path / "config.yaml"), meta=meta)


def load_model_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load weights, or raise one line saying how the checkpoint differs from the model."""
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise KaizenError(f"{path} is not a kaizen checkpoint (no model weights)")
    own = model.state_dict()
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    mismatched = [key for key in own if key in weights and weights[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            key = mismatched[0]
            parts.append(f"{key} is {tuple(weights[key].shape)} there, {tuple(own[key].shape)} here")
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        raise KaizenError(f"{path} belongs to another architecture: {'; '.join(parts)}")
    model.load_state_dict(weights)
