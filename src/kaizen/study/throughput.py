"""Aggregate throughput of a study session: finished runs per hour of wall clock, and how many ran at once.

`DIR/throughput.json` holds the last session that ran something (a resumed study that had nothing left to
run keeps the earlier one): the backend and layout, the wall clock of the whole session (lock to last
result), the sum of the runs' own times (each measured in its worker, set-up and test included), runs per
hour of wall clock, and their ratio (the runs' own times over the wall clock: how many ran at once on
average).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.errors import KaizenError
from kaizen.track import rundir

THROUGHPUT_FILE = "throughput.json"


def summarize(
    finished: int, failed: int, wall_seconds: float, run_seconds: float, backend: str, where: str, at: str
) -> dict[str, Any]:
    """The throughput record of a session from its measured times."""
    wall = max(wall_seconds, 1e-9)
    return {
        "backend": backend,
        "where": where,
        "runs_finished": finished,
        "runs_failed": failed,
        "wall_seconds": round(wall_seconds, 3),
        "run_seconds": round(run_seconds, 3),
        "runs_per_hour": round(finished * 3600 / wall, 2),
        "concurrency": round(run_seconds / wall, 3),
        "at": at,
    }


def describe(record: dict[str, Any]) -> str:
    """One line: `8 runs in 41.2 s = 699 runs/hour · the runs' own times add up to 78.5 s (1.9 at a time)`."""
    return (
        f"{record['runs_finished']} run(s) in {record['wall_seconds']:.1f} s of wall clock = "
        f"{record['runs_per_hour']:.0f} runs/hour · the runs' own times add up to {record['run_seconds']:.1f} s "
        f"({record['concurrency']:.1f} at a time on average) · {record['where']}"
    )


def write(study_dir: Path, record: dict[str, Any]) -> None:
    """Write `record` as the study's throughput.json."""
    rundir.write_json(Path(study_dir) / THROUGHPUT_FILE, record)


def read(study_dir: Path | str) -> dict[str, Any] | None:
    """The study's last throughput record, or None when it has none (or an unreadable one)."""
    path = Path(study_dir) / THROUGHPUT_FILE
    if not path.is_file():
        return None
    try:
        record = rundir.read_json(path)
    except KaizenError:
        return None
    needed = ("runs_finished", "wall_seconds", "run_seconds", "runs_per_hour", "concurrency", "where")
    return record if isinstance(record, dict) and all(key in record for key in needed) else None
