"""RunWriter: the one object that writes a run directory while training.

The training loop talks only to a writer. Under data-parallel training every process builds one, but only the
main process gets a real `RunWriter`; the others get a `NullWriter`, so "who writes files" is decided in one
place (`make_writer`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kaizen.track import rundir


def now() -> str:
    """The current time as an ISO-8601 string (UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunWriter:
    """Writes config.yaml, meta.json, metrics.csv, summary.json, checkpoints and curves.png of one run."""

    def __init__(self, path: Path, plots: bool = True):
        self.path = Path(path)
        self.plots = plots
        self.meta: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def start(self, config_yaml: str, meta: dict[str, Any]) -> None:
        """Write the resolved config and meta.json with status `running`."""
        rundir.atomic_write_text(self.path / "config.yaml", config_yaml)
        self.meta = {**meta, "status": "running", "start": now(), "end": None}
        rundir.write_json(self.path / "meta.json", self.meta)

    def resume(self, epoch: int, config_yaml: str) -> None:
        """Continue a run: keep metric rows up to `epoch` (those after it are redone) and mark it running."""
        rundir.atomic_write_text(self.path / "config.yaml", config_yaml)
        self.meta = rundir.read_json(self.path / "meta.json")
        self.rows = [row for row in rundir.read_metrics(self.path / "metrics.csv") if row["epoch"] <= epoch]
        self.meta.setdefault("resumed", []).append({"at": now(), "from_epoch": epoch})
        self.meta.update(status="running", end=None, error=None)
        rundir.write_json(self.path / "meta.json", self.meta)
        rundir.atomic_write_text(self.path / "metrics.csv", rundir.format_metrics(self.rows))

    def log_epoch(self, rows: list[dict[str, Any]]) -> None:
        """Append one epoch's rows (one per split) to metrics.csv."""
        self.rows.extend(rows)
        rundir.atomic_write_text(self.path / "metrics.csv", rundir.format_metrics(self.rows))

    def checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """Write checkpoints/<name>.pt atomically."""
        rundir.save_checkpoint(self.path / "checkpoints" / f"{name}.pt", state)

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Write summary.json and curves.png, and close meta.json with `status`."""
        if summary is not None:
            rundir.write_json(self.path / "summary.json", summary)
        if self.plots and self.rows:
            from kaizen.track.plots import plot_curves

            plot_curves(self.path / "metrics.csv", self.path / "curves.png")
        self.meta.update(status=status, end=now(), error=error)
        rundir.write_json(self.path / "meta.json", self.meta)


class NullWriter(RunWriter):
    """The writer of processes that must not touch the run directory."""

    def __init__(self) -> None:
        super().__init__(Path("."), plots=False)

    def start(self, config_yaml: str, meta: dict[str, Any]) -> None:
        pass

    def resume(self, epoch: int, config_yaml: str) -> None:
        pass

    def log_epoch(self, rows: list[dict[str, Any]]) -> None:
        pass

    def checkpoint(self, name: str, state: dict[str, Any]) -> None:
        pass

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        pass


def make_writer(path: Path | None, is_main: bool, plots: bool = True) -> RunWriter:
    """The single place that decides who writes: the main process writes, every other one does not."""
    return RunWriter(path, plots) if is_main and path is not None else NullWriter()
