"""RunWriter: the one object that writes a run directory while training.

The training loop (and the statistics recorder it feeds) talks only to a writer: metrics.csv, stats.jsonl,
TensorBoard events in tb/, checkpoints, summary.json and the pictures all go through it. Under data-parallel
training every process builds one, but only the main process gets a real `RunWriter`; the others get a
`NullWriter`, so "who writes files" is decided in one place (`make_writer`).
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from kaizen.errors import KaizenError
from kaizen.track import rundir
from kaizen.track.tensorboard import TensorBoard

# stats.jsonl fields drawn in TensorBoard, by record kind: {field: chart family}.
_TB_FIELDS = {
    "layer": {"grad_norm": "grad_norm", "weight_norm": "weight_norm", "update_ratio": "update_ratio"},
    "activation": {
        "mean": "activation_mean",
        "std": "activation_std",
        "dead": "dead",
        "saturated": "saturated",
    },
    "model": {"grad_norm": "grad_norm"},
}


# meta.json's error of a run whose epochs and test score are written but whose pictures are not
PICTURES_MISSING = "interrupted while drawing its pictures; kaizen train --resume draws them"


def now() -> str:
    """The current time as an ISO-8601 string (UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunWriter:
    """Writes config.yaml, meta.json, metrics.csv, stats.jsonl, tb/, summary.json, checkpoints and pictures.

    `stats` writes stats.jsonl; `tensorboard` writes tb/ (`histograms` adds the per-layer histograms).
    """

    def __init__(
        self,
        path: Path,
        plots: bool = True,
        stats: bool = False,
        tensorboard: bool = False,
        histograms: bool = True,
    ):
        self.path = Path(path)
        self.plots = plots
        self.stats = stats
        self.tensorboard = tensorboard
        self.histograms = histograms
        self.meta: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.stat_records: list[dict[str, Any]] = []
        self.stat_lines: list[str] = []  # stat_records as JSON lines, so each epoch serialises only its own
        self.tb: TensorBoard | None = None

    @property
    def wants_histograms(self) -> bool:
        """Whether `log_histograms` writes anything (so the recorder can skip collecting the tensors)."""
        return self.tensorboard and self.histograms

    def start(self, config_yaml: str, meta: dict[str, Any]) -> None:
        """Write the resolved config and meta.json with status `running`."""
        self._open_tensorboard()  # first: a missing tensorboard package stops the run before it has a record
        rundir.atomic_write_text(self.path / "config.yaml", config_yaml)
        self.meta = {**meta, "status": "running", "start": now(), "end": None, **rundir.process()}
        rundir.write_json(self.path / "meta.json", self.meta)

    def resume(self, epoch: int, config_yaml: str) -> None:
        """Continue a run: keep metric rows up to `epoch` (those after it are redone) and mark it running.

        meta.json's `resumed` history records each session: when, from which epoch, and the config keys it
        changed (`{key: [old, new]}`, in effect from that epoch on).
        """
        trained_with = yaml.safe_load((self.path / "config.yaml").read_text())
        rundir.atomic_write_text(self.path / "config.yaml", config_yaml)
        self.meta = rundir.read_json(self.path / "meta.json")
        self.rows = [row for row in rundir.read_metrics(self.path / "metrics.csv") if row["epoch"] <= epoch]
        session = {"at": now(), "from_epoch": epoch}
        changed = rundir.changed_keys(trained_with, yaml.safe_load(config_yaml))
        if changed:
            session["changed"] = changed
        self.meta.setdefault("resumed", []).append(session)
        self.meta.update(status="running", end=None, error=None, **rundir.process())
        rundir.write_json(self.path / "meta.json", self.meta)
        rundir.atomic_write_text(self.path / "metrics.csv", rundir.format_metrics(self.rows))
        self.stat_records = [
            record for record in rundir.read_stats(self.path / rundir.STATS_FILE) if record["epoch"] <= epoch
        ]
        self._write_stats()
        self._open_tensorboard()

    def _open_tensorboard(self) -> None:
        if self.tensorboard:
            self.tb = TensorBoard(self.path / "tb")

    def log_epoch(self, rows: list[dict[str, Any]]) -> None:
        """Append one epoch's rows (one per split) to metrics.csv; loss, accuracy and lr go to TensorBoard."""
        self.rows.extend(rows)
        rundir.atomic_write_text(self.path / "metrics.csv", rundir.format_metrics(self.rows))
        if self.tb is not None:
            for row in rows:
                self.tb.scalars(
                    row["epoch"], {f"loss/{row['split']}": row["loss"], f"acc/{row['split']}": row["acc"]}
                )
            self.tb.scalars(rows[0]["epoch"], {"lr": rows[0]["lr"]})
            self.tb.flush()

    def log_stats(self, records: list[dict[str, Any]]) -> None:
        """Append statistics records (each with `epoch` and `kind`) to stats.jsonl and draw them in TensorBoard.

        Kinds: `layer` (a dense/conv layer's gradient and weight norms, update ratio), `activation` (an
        activation layer's output statistics), `model` (global gradient norm) and `custom` (a user metric,
        `name` and `value`; always kept, also when stats are off).
        """
        kept = [record for record in records if self.stats or record["kind"] == "custom"]
        if kept:
            self.stat_records.extend(kept)
            self._write_stats()
        if self.tb is not None:
            for record in records:
                if record["kind"] == "custom":
                    self.tb.scalars(record["epoch"], {f"custom/{record['name']}": record["value"]})
                    continue
                label = record.get("layer", "model")
                fields = _TB_FIELDS.get(record["kind"], {})
                self.tb.scalars(
                    record["epoch"],
                    {f"{chart}/{label}": record.get(field) for field, chart in fields.items()},
                )
            self.tb.flush()

    def _write_stats(self) -> None:
        # The file is rewritten whole (atomically) each epoch; lines already serialised are reused.
        self.stat_lines += [json.dumps(record) + "\n" for record in self.stat_records[len(self.stat_lines) :]]
        if self.stat_lines:
            rundir.atomic_write_text(self.path / rundir.STATS_FILE, "".join(self.stat_lines))

    def log_histograms(self, epoch: int, tensors: dict[str, torch.Tensor]) -> None:
        """TensorBoard histograms (with mean/std/min/max scalars) of named tensors, e.g. `weights/fc1`."""
        if self.tb is not None and self.histograms:
            for tag, values in tensors.items():
                self.tb.histogram(epoch, tag, values)

    def log_image(self, epoch: int, tag: str, image: torch.Tensor) -> None:
        """A TensorBoard image (C×H×W in [0, 1])."""
        if self.tb is not None:
            self.tb.image(epoch, tag, image)

    def log_graph(self, model: nn.Module, example: torch.Tensor) -> None:
        """The model graph in TensorBoard, traced on an example batch."""
        if self.tb is not None:
            self.tb.graph(model, example)

    def checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """Write checkpoints/<name>.pt atomically."""
        rundir.save_checkpoint(self.path / "checkpoints" / f"{name}.pt", state)

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Close the record: summary.json, the pictures (curves, gradients, activations), then meta.json's status.

        A run is `done` only once its pictures are drawn: an interrupt while drawing records it `stopped`
        (`kaizen train --resume` draws them). A run that fails or stops has its status written first, and its
        pictures are then drawn if they can be (a full disk, say, must not hide why it failed).
        """
        if summary is not None:
            rundir.write_json(self.path / "summary.json", summary)
        if status != "done":
            self._write_status(status, error)
            with contextlib.suppress(KaizenError):
                self.draw()
            return
        try:
            self.draw()
        except KeyboardInterrupt:
            self._write_status("stopped", PICTURES_MISSING)
            raise
        self._write_status(status, error)

    def draw(self) -> None:
        """Draw the pictures (curves.png; gradients.png and activations.png with stats) and close tb/."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.plots and self.rows:
            from kaizen.track.plots import plot_curves

            plot_curves(self.path / "metrics.csv", self.path / "curves.png", kept=self._kept())
        if self.plots and any(record["kind"] in ("layer", "activation") for record in self.stat_records):
            from kaizen.track.stat_plots import plot_stats

            plot_stats(self.stat_records, self.path, title=self.path.name)

    def _kept(self) -> dict[str, Any] | None:
        """The weights the finished run ended with (summary.json): their checkpoint, epoch and monitor."""
        path = self.path / "summary.json"
        try:
            summary = rundir.read_json(path) if path.is_file() else {}
        except KaizenError:  # a damaged summary must not cost the run its pictures: each panel marks its best
            return None
        name = summary.get("checkpoint")
        epoch = summary.get("best_epoch") if name == "best.pt" else summary.get("epochs_completed")
        return {"checkpoint": name, "epoch": epoch, "monitor": summary.get("monitor")} if name else None

    def _write_status(self, status: str, error: str | None) -> None:
        self.meta.update(status=status, end=now(), error=error)
        rundir.write_record(self.path / "meta.json", self.meta)


class NullWriter(RunWriter):
    """The writer of processes that must not touch the run directory."""

    def __init__(self) -> None:
        super().__init__(Path("."), plots=False)

    @property
    def wants_histograms(self) -> bool:
        return False

    def start(self, config_yaml: str, meta: dict[str, Any]) -> None:
        pass

    def resume(self, epoch: int, config_yaml: str) -> None:
        pass

    def log_epoch(self, rows: list[dict[str, Any]]) -> None:
        pass

    def log_stats(self, records: list[dict[str, Any]]) -> None:
        pass

    def log_histograms(self, epoch: int, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def log_image(self, epoch: int, tag: str, image: torch.Tensor) -> None:
        pass

    def log_graph(self, model: nn.Module, example: torch.Tensor) -> None:
        pass

    def checkpoint(self, name: str, state: dict[str, Any]) -> None:
        pass

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        pass


def complete_pictures(path: Path) -> bool:
    """Draw the pictures of a run interrupted while drawing them and mark it done; False for any other run."""
    meta = rundir.read_json(Path(path) / "meta.json")
    if meta.get("status") == "done" or meta.get("error") != PICTURES_MISSING:
        return False
    lock = rundir.RunLock()
    lock.acquire(path)  # one writer: a second --resume of the same run is refused
    try:
        writer = RunWriter(path)
        writer.meta = rundir.read_json(Path(path) / "meta.json")
        if writer.meta.get("error") != PICTURES_MISSING:  # the holder before us drew them
            return writer.meta.get("status") == "done"
        writer.rows = rundir.read_metrics(writer.path / "metrics.csv")
        writer.stat_records = rundir.read_stats(writer.path / rundir.STATS_FILE)
        writer.draw()
        writer._write_status("done", None)
    finally:
        lock.release()
    return True


def make_writer(
    path: Path | None,
    is_main: bool,
    plots: bool = True,
    stats: bool = False,
    tensorboard: bool = False,
    histograms: bool = True,
) -> RunWriter:
    """The single place that decides who writes: the main process writes, every other one does not."""
    if is_main and path is not None:
        return RunWriter(path, plots, stats=stats, tensorboard=tensorboard, histograms=histograms)
    return NullWriter()
