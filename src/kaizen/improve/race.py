"""Run configs on the compare backends and race candidates with successive halving.

Every batch of runs is a compare study under the improve's directory, so a finished run is reused when the
same command runs again (resuming), on the local pool or Ray alike. `rung_epochs` gives the short lengths;
after each rung the better half (at least one) goes on; the incumbent runs in each rung where candidates enter
(the first, and the longest short rung for moves that regularise), as their reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.study.compare import Plan, Variant, run_path, run_plan
from kaizen.track import rundir

RUNG_FRACTIONS = (0.125, 0.25, 0.5)  # of the full length; rungs of equal epochs are merged
KEEP = 0.5  # the share of candidates promoted from one rung to the next


@dataclass
class Result:
    """One finished run: which config (variant) and seed, its validation accuracy and training seconds."""

    variant: str
    seed: int
    epochs: int
    val_acc: float
    seconds: float
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "seed": self.seed,
            "epochs": self.epochs,
            "val_acc": round(self.val_acc, 6),
            "seconds": round(self.seconds, 3),
            "path": str(self.path),
        }


def val_acc(summary: dict[str, Any]) -> float:
    """The validation accuracy of the weights the run ended with (best.pt's or the last)."""
    which = "best" if summary.get("checkpoint") == "best.pt" else "final"
    return float((summary.get(which) or summary.get("final") or {}).get("val_acc", math.nan))


def run_batch(
    base: Config,
    variants: list[tuple[str, tuple[str, ...]]],
    seeds: list[int],
    out_dir: Path,
    workers: int | None,
    backend: str,
    on_run: Callable[[str, int, str, float], None] | None = None,
    address: str | None = None,
) -> list[Result]:
    """Train each (id, overrides) on each seed under `out_dir` (finished runs reused); return their results.

    A run that fails is a KaizenError naming the variant and the error: improve cannot judge a config whose
    run did not finish.
    """
    plan = Plan(
        base=base,
        variants=[Variant(name, tuple(overrides)) for name, overrides in variants],
        seeds=seeds,
        metric="best.val_acc",
        kind="improve-race",
        title="kaizen improve",
    )

    def event(progress) -> None:
        if on_run is not None and progress.status in ("done", "skipped"):
            # for the progress line only: a summary not readable here shows no seconds, and stops nothing
            where = progress.path / "summary.json" if progress.path else None
            summary = rundir.read_json(where) if where is not None and where.is_file() else {}
            seconds = float(summary.get("timings", {}).get("train_seconds", 0.0))
            on_run(progress.variant, progress.seed, progress.status, seconds)

    outcome = run_plan(plan, out_dir, workers, on_event=event, backend=backend, address=address)
    if outcome.failed:
        first = outcome.failed[0]
        if first.status == "stopped":
            raise KeyboardInterrupt
        raise KaizenError(f"run {first.variant} seed {first.seed} failed: {first.error}")
    results = []
    for name, _ in variants:
        for seed in seeds:
            path = run_path(out_dir, name, seed)
            summary = rundir.read_json(path / "summary.json")
            results.append(
                Result(
                    name,
                    seed,
                    int(summary.get("epochs_completed", 0)),
                    val_acc(summary),
                    float(summary.get("timings", {}).get("train_seconds", 0.0)),
                    path,
                )
            )
    return results


def rung_epochs(full: int) -> list[int]:
    """The distinct short lengths below `full` (epochs), shortest first."""
    lengths = sorted({max(1, round(full * fraction)) for fraction in RUNG_FRACTIONS})
    return [epochs for epochs in lengths if epochs < full]


def scaled(overrides: tuple[str, ...], fraction: float) -> tuple[str, ...]:
    """A candidate's overrides for a shorter rung: its own train.epochs scaled like the incumbent's."""
    out = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "train.epochs":
            override = f"train.epochs={max(1, round(int(value) * fraction))}"
        out.append(override)
    return tuple(out)


def survivors(scores: dict[str, float], count: int, costs: dict[str, float] | None = None) -> list[str]:
    """The `count` best ids by score; among equal scores the cheaper first (the same evidence for less budget:
    on 144 validation images ties are common), then by id, so the same scores always give the same order."""
    costs = costs or {}
    ranked = sorted(scores, key=lambda name: (-scores[name], costs.get(name, 1.0), name))
    return ranked[:count]


def keep_count(n: int) -> int:
    return max(1, math.ceil(n * KEEP))
