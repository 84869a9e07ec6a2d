"""`kaizen runs`: one row per run directory under a folder, read from its own record, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaizen.errors import KaizenError, plural


@dataclass(frozen=True)
class RunRow:
    """What `kaizen runs` shows of one run; `broken` says why a run's record cannot be read (else None)."""

    path: Path
    status: str
    data: str = ""
    model: str = ""
    epochs: str = ""
    val_acc: float | None = None
    test_acc: float | None = None
    broken: str | None = None


def find_runs(folder: Path) -> list[Path]:
    """The run directories at or under `folder` (a folder holding meta.json or config.yaml), in name order
    (run names start with their start time)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KaizenError(f"runs folder not found: {folder}")
    marks = {path.parent for name in ("meta.json", "config.yaml") for path in folder.rglob(name)}
    return sorted(marks, key=str)


def read_row(path: Path) -> RunRow:
    """The row of one run; a run whose record is damaged is a row that says so."""
    from kaizen.run import load_run

    try:
        run = load_run(path)
        summary = run.summary
    except KaizenError as error:
        return RunRow(path=path, status="broken", broken=str(error))
    cfg = run.config
    data = cfg.data.name + (f" {cfg.data.path}" if cfg.data.path else "")
    model = cfg.model.preset or f"{len(cfg.model.layers or [])} layers"
    done = summary.get("epochs_completed")
    epochs = f"{done}/{cfg.train.epochs}" if isinstance(done, int) else f"-/{cfg.train.epochs}"
    best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    return RunRow(
        path=path,
        status=run.status,
        data=data,
        model=model,
        epochs=epochs,
        val_acc=_number(best.get("val_acc")),
        test_acc=_number(test.get("acc")),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def render_rows(rows: list[RunRow], folder: Path) -> list[str]:
    """Plain aligned lines (a pipe or a log file reads them as a terminal does): a header, one line per run,
    then why each broken run is broken, and the count."""
    header = ("run", "status", "data", "model", "epochs", "val acc", "test acc")
    table = [header]
    for row in rows:
        name = str(row.path.relative_to(folder)) if row.path != Path(folder) else str(row.path)
        table.append(
            (
                name,
                row.status,
                row.data,
                row.model,
                row.epochs,
                "-" if row.val_acc is None else f"{row.val_acc:.2%}",
                "-" if row.test_acc is None else f"{row.test_acc:.2%}",
            )
        )
    widths = [max(len(cells[column]) for cells in table) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(width) if column >= 5 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()
        for cells in table
    ]
    lines += [f"broken: {row.broken}" for row in rows if row.broken is not None]
    broken = sum(row.broken is not None for row in rows)
    lines.append(plural(len(rows), "run") + (f", {broken} broken" if broken else ""))
    return lines
