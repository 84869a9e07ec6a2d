"""What the doctor reads: a run directory's config, meta, metrics.csv, stats.jsonl and summary, in one object."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.track import rundir
from kaizen.track.rundir import STATS_FILE, read_stats


@dataclass
class RunRecord:
    """A run as the detectors see it. Metric rows and statistics records are sorted by epoch."""

    path: Path
    config: Config
    meta: dict[str, Any]
    summary: dict[str, Any]
    train: list[dict[str, Any]]  # metrics.csv rows of the train split
    val: list[dict[str, Any]]  # metrics.csv rows of the validation split
    stats: list[dict[str, Any]]  # stats.jsonl records
    corrupt_lines: list[str] = field(default_factory=list)  # warnings about skipped stats.jsonl lines
    num_classes: int | None = None

    @property
    def status(self) -> str:
        """running | done | failed | stopped (meta.json)."""
        return self.meta.get("status", "unknown")

    @property
    def chance_loss(self) -> float | None:
        """Cross-entropy of a uniform guess, ln(classes): where an untrained classifier starts."""
        return math.log(self.num_classes) if self.num_classes and self.num_classes > 1 else None

    @property
    def has_stats(self) -> bool:
        """Whether per-layer statistics were recorded."""
        return any(record["kind"] in ("layer", "activation") for record in self.stats)

    def train_losses(self) -> list[float]:
        """Training loss per epoch."""
        return [row["loss"] for row in self.train]

    def by_epoch(self, kind: str) -> dict[int, list[dict[str, Any]]]:
        """{epoch: records of `kind`}, epochs ascending, layers in model order within an epoch."""
        epochs: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for record in self.stats:
            if record["kind"] == kind:
                epochs[record["epoch"]].append(record)
        return dict(sorted(epochs.items()))

    def by_layer(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        """{layer: its records of `kind` by epoch}, layers in model order."""
        layers: dict[str, list[dict[str, Any]]] = {}
        for record in self.stats:
            if record["kind"] == kind:
                layers.setdefault(record["layer"], []).append(record)
        return layers


def read_run(path: str | Path) -> RunRecord:
    """Read a run directory for diagnosis; KaizenError when it is not a run or holds nothing to diagnose."""
    from kaizen.run import load_run

    run = load_run(path)
    corrupt: list[str] = []
    stats = sorted(read_stats(run.path / STATS_FILE, warn=corrupt.append), key=lambda record: record["epoch"])
    diverged = "diverged" in (run.meta.get("error") or "")
    if not (run.path / "metrics.csv").is_file() and not diverged and run.meta.get("status") != "running":
        raise KaizenError(
            f"{run.path / 'metrics.csv'} is missing: the run's per-epoch record cannot be diagnosed"
        )
    try:
        rows = run.metrics()
    except (KeyError, ValueError):
        raise KaizenError(f"{run.path / 'metrics.csv'} is corrupt (unexpected columns or values)") from None
    summary = run.summary
    record = RunRecord(
        path=run.path,
        config=run.config,
        meta=run.meta,
        summary=summary,
        train=[row for row in rows if row["split"] == "train"],
        val=[row for row in rows if row["split"] == "val"],
        stats=stats,
        corrupt_lines=corrupt,
        num_classes=_num_classes(run.path, summary),
    )
    if not record.train and not record.stats and "diverged" not in (record.meta.get("error") or ""):
        state = "is still running and has" if record.status == "running" else "has"
        raise KaizenError(f"{run.path} {state} no finished epoch yet: nothing to diagnose")
    return record


def _num_classes(path: Path, summary: dict[str, Any]) -> int | None:
    """The number of classes: from summary.json, else from the last checkpoint (a run still in progress)."""
    classes = summary.get("data", {}).get("num_classes")
    if classes:
        return int(classes)
    last = path / "checkpoints" / "last.pt"
    if last.is_file():
        try:
            return int(rundir.load_checkpoint(last)["num_classes"])
        except (KaizenError, KeyError, TypeError, ValueError):
            return None
    return None
