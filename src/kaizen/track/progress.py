"""Live progress of a training run: a rich bar with loss, accuracy, learning rate and ETA."""

from __future__ import annotations

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

    def note(self, line: str) -> None:
        """Say one line about the run (a switch that cannot apply here, say); silent when disabled."""
        if self.enabled:
            self.console.print(line, highlight=False, soft_wrap=True)

    def start(self, epochs: int, steps_per_epoch: int, start_epoch: int) -> None:
        """Open the bar at `start_epoch` of `epochs`."""
        if not self.enabled:
            return
        self.steps_per_epoch = steps_per_epoch
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
        if self.progress is None:
            return
        extra = f" · val {metrics['val_loss']:.4f} {metrics['val_acc']:.2%}" if "val_loss" in metrics else ""
        self.progress.update(self.task, extra=extra)

    def close(self) -> None:
        """Stop drawing."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
