"""What the benchmark scripts share: where MNIST lives, the dataset overrides, training in a throw-away folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import kaizen

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def dataset_overrides(root: str) -> list[str]:
    """mnist-10k from `root` when the IDX files are there, else the bundled digits."""
    return ["data.name=mnist", f"data.root={root}"] if Path(root).is_dir() else ["data.name=digits"]


def device_name(requested: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if requested == "auto" else requested


def train(cfg: kaizen.Config, overrides: list[str], **kwargs) -> tuple[dict, list[dict]]:
    """Train in a throw-away runs folder without pictures; return (summary, metric rows)."""
    with tempfile.TemporaryDirectory() as runs:
        run = kaizen.train(cfg.override([*overrides, f"log.runs_dir={runs}", "log.plots=false"]), **kwargs)
        return run.summary, run.metrics()


def train_seconds(rows: list[dict]) -> list[float]:
    """The training part of each epoch, in seconds, from a run's metric rows."""
    return [row["seconds"] for row in rows if row["split"] == "train"]


def machine() -> str:
    """One line naming the machine, for the tables."""
    import os
    import platform

    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu} ({os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads){gpu}; torch {torch.__version__}"
