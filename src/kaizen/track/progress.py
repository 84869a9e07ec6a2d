"""Progress of a training run: a live rich bar on a terminal; one plain line per epoch in a file or a pipe
(CI, nohup, Slurm), where a live display shows nothing until the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """Receives the loop's progress; draws nothing when disabled (`--quiet`, tests, worker processes)."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True, emoji=False)
        self.progress: Progress | None = None
        self.task = None
        self.steps_per_epoch = 1
        self.plain = False  # a file or a pipe: one line per epoch instead of the bar

    def note(self, line: str) -> None:
        """Say one line about the run (a switch that cannot apply here, say); silent when disabled."""
        if self.enabled:
            self.console.print(line, highlight=False, soft_wrap=True)

    def start(self, epochs: int, steps_per_epoch: int, start_epoch: int) -> None:
        """Open the bar at `start_epoch` of `epochs` (on a terminal; elsewhere each epoch will be one line)."""
        if not self.enabled:
            return
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.lr: float | None = None
        self.epoch_started = time.perf_counter()
        if not self.console.is_terminal and not self.console.is_jupyter:  # a notebook draws the bar well
            self.plain = True
            return
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=20),
            TextColumn("loss {task.fields[loss]} acc {task.fields[acc]}{task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=epochs * steps_per_epoch,
            completed=start_epoch * steps_per_epoch,
            epoch=f"{start_epoch + 1}/{epochs}",
            loss="-",
            acc="-",
            extra="",
        )
        self.epochs = epochs

    def step(self, epoch: int, step: int, loss: float, acc: float, lr: float) -> None:
        """Show the running training loss and accuracy of the current epoch."""
        self.lr = lr
        if self.progress is None:
            return
        self.progress.update(
            self.task,
            completed=epoch * self.steps_per_epoch + step,
            epoch=f"{epoch + 1}/{self.epochs}",
            loss=f"{loss:.4f}",
            acc=f"{acc:.2%}",
        )

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Show the validation result of the epoch just finished."""
        if self.plain:
            self.console.print(self.epoch_line(epoch, metrics), highlight=False, markup=False, soft_wrap=True)
            self.epoch_started = time.perf_counter()
            return
        if self.progress is None:
            return
        extra = f" · val {metrics['val_loss']:.4f} {metrics['val_acc']:.2%}" if "val_loss" in metrics else ""
        self.progress.update(self.task, extra=extra)

    def epoch_line(self, epoch: int, metrics: dict[str, float]) -> str:
        """One plain line: `epoch 3/30 · train loss 0.4121 acc 88.20% · val loss 0.3520 acc 90.28% · lr 0.001 ·
        1.2s`."""
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for split in ("train", "val"):
            if f"{split}_loss" in metrics:
                parts.append(f"{split} loss {metrics[f'{split}_loss']:.4f} acc {metrics[f'{split}_acc']:.2%}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:.3g}")
        parts.append(f"{time.perf_counter() - self.epoch_started:.1f}s")
        return " · ".join(parts)

    def close(self) -> None:
        """Stop drawing."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
