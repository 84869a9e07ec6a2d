"""Verify a recommendation: train the run's config with the override, same seed and budget, and compare."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.doctor import examine, top_recommendation
from kaizen.doctor.findings import Finding
from kaizen.doctor.record import RunRecord, read_run
from kaizen.errors import KaizenError


@dataclass
class Outcome:
    """The headline numbers of one run."""

    path: Path
    status: str
    epochs: int
    best_val_acc: float | None
    test_acc: float | None
    final_train_loss: float | None
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, run: RunRecord) -> Outcome:
        """The outcome of a read run, with its findings."""
        val_accs = [row["acc"] for row in run.val]
        return cls(
            path=run.path,
            status=run.status,
            epochs=len(run.train),
            best_val_acc=max(val_accs) if val_accs else None,
            test_acc=run.summary.get("test", {}).get("acc"),
            final_train_loss=run.train[-1]["loss"] if run.train else None,
            findings=examine(run),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready); findings as their codes and severities."""
        return {
            "path": str(self.path),
            "status": self.status,
            "epochs": self.epochs,
            "best_val_acc": self.best_val_acc,
            "test_acc": self.test_acc,
            "final_train_loss": self.final_train_loss,
            "findings": [{"code": f.code, "severity": f.severity} for f in self.findings],
        }


@dataclass
class Verification:
    """A recommendation tried: the overrides, the finding they address, and the run before and after."""

    overrides: list[str]
    addresses: str | None  # the code of the finding whose recommendation this is
    before: Outcome
    after: Outcome

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return {
            "overrides": self.overrides,
            "addresses": self.addresses,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


def verify(run_path: str | Path, overrides: list[str] | None = None, quiet: bool = True) -> Verification:
    """Train the run's config with `overrides` (default: the top recommendation) and compare with the run.

    Same config otherwise, hence the same seed, data split and budget (epochs). The new run is written next
    to the original, named `<name>-verify`. Raises KaizenError if the run is still in progress, or if no
    finding recommends anything and no overrides were given.
    """
    from kaizen.track import rundir
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    record = read_run(run_path)
    if record.status == "running":
        raise KaizenError(f"{record.path} is still in progress; --verify compares with a finished run")
    before = Outcome.of(record)
    addresses = None
    if not overrides:
        top = top_recommendation(before.findings)
        if top is None:
            raise KaizenError(
                f"{record.path}: no warning or critical finding recommends a change; nothing to verify"
            )
        addresses, overrides = top[0].code, [top[1]]
    cfg = record.config.override(overrides)
    cfg.name = f"{record.config.run_name()}-verify"
    run_dir = rundir.new_run_dir(record.path.parent, cfg.run_name())
    cfg.log.runs_dir = str(record.path.parent)
    try:
        fit(cfg, run_dir=run_dir, reporter=Reporter(enabled=not quiet))
    except KaizenError:
        if not (run_dir / "meta.json").is_file():  # it failed before training started: leave no empty run
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return Verification(list(overrides), addresses, before, Outcome.of(read_run(run_dir)))
