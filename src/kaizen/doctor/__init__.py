"""The doctor: read a run, name each problem with its evidence, and recommend the overrides to try.

    findings = kaizen.diagnose("runs/20250101-120000-digits-mlp")
    for finding in findings:
        print(finding.severity, finding.title, finding.recommendations)

`diagnose` runs every detector of `kaizen.doctor.detectors` on the run's metrics.csv, stats.jsonl and config,
and adds notes (severity info) about the diagnosis itself: a run too broken to judge (at chance), a run still
in progress, a run recorded without statistics, corrupt lines skipped in stats.jsonl. `verify.race` trains the
top recommendations from the run's seed and ranks them; `check` and `lr_find` look at a config before a run.
"""

from __future__ import annotations

import math
from pathlib import Path

from kaizen.doctor.detectors import CAUSES, CHANCE_ACCURACY_FACTOR, DETECTORS, STALLED_FRACTION
from kaizen.doctor.findings import Finding
from kaizen.doctor.record import RunRecord, read_run

__all__ = ["Finding", "RunRecord", "diagnose", "examine", "read_run", "top_recommendation"]


def diagnose(run_path: str | Path) -> list[Finding]:
    """Return the findings of the run at `run_path`, most severe first (KaizenError if it is not a run)."""
    return examine(read_run(run_path))


def examine(run: RunRecord) -> list[Finding]:
    """Return the findings of an already read run, most severe first."""
    findings = [finding for detector in DETECTORS if (finding := detector(run)) is not None]
    if any(finding.code in CAUSES and finding.severity != "info" for finding in findings):
        # The cause already explains why the model does not fit; "train longer" would be the wrong advice.
        findings = [finding for finding in findings if finding.code not in ("underfitting", "not_learning")]
    findings += _notes(run)
    return sorted(findings, key=lambda finding: finding.rank)  # stable: detector order within a severity


def top_recommendation(findings: list[Finding]) -> tuple[Finding, str] | None:
    """The first recommendation of the most severe warning or critical finding that has one."""
    for finding in findings:
        if finding.severity != "info" and finding.recommendations:
            return finding, finding.recommendations[0]
    return None


def _notes(run: RunRecord) -> list[Finding]:
    notes = []
    epochs = len(run.train)
    finite = [loss for loss in run.train_losses() if math.isfinite(loss)]
    chance = run.chance_loss
    at_chance = bool(run.train) and max(row["acc"] for row in run.train) <= CHANCE_ACCURACY_FACTOR / (
        run.num_classes or 10
    )
    if finite and chance is not None and min(finite) >= STALLED_FRACTION * chance and at_chance:
        notes.append(
            Finding(
                "info",
                "too_broken_to_judge",
                "Too broken to judge generalisation",
                f"the best train loss {min(finite):.3g} is no better than chance ({chance:.3g}), and so is the "
                f"best train accuracy {max(row['acc'] for row in run.train):.1%}",
                "A model that has learned nothing cannot be judged for overfitting, label noise or capacity; "
                "fix the findings above, then run the doctor on the new run.",
            )
        )
    if run.status == "running":
        notes.append(
            Finding(
                "info",
                "in_progress",
                "Run still in progress",
                f"meta.json says running; {epochs} finished epoch(s) of {run.config.train.epochs} diagnosed",
                "The findings describe the epochs recorded so far; run the doctor again when training ends. "
                "(A run whose process was killed also stays 'running'; kaizen train --resume continues it.)",
                details={"epochs": epochs},
            )
        )
    if not run.has_stats:
        if run.config.log.stats:
            why = "the run recorded statistics but stopped before its first sampled step"
            how = "Lower log.stats_every to sample earlier steps."
        else:
            why = "the run was trained with log.stats=false"
            how = "Train again with --set log.stats=true (the default) to record them."
        notes.append(
            Finding(
                "info",
                "no_stats",
                "No per-layer statistics",
                f"stats.jsonl holds no layer records: {why}",
                "Gradient, dead-unit, saturation and update-size checks need the statistics recorder; the "
                f"findings above come from metrics.csv and meta.json only. {how}",
                recommendations=[] if run.config.log.stats else ["log.stats=true"],
            )
        )
    from kaizen.audit.hints import doctor_notes  # audit's findings are doctor Findings: imported here

    notes += doctor_notes(run.path, run.config)  # data quality: an audit on file, or a hint to run one
    if run.corrupt_lines:
        notes.append(
            Finding(
                "info",
                "stats_corrupt",
                "Corrupt lines skipped in stats.jsonl",
                "; ".join(run.corrupt_lines),
                "Those lines are not JSON records with an epoch and a kind; the rest of the file was used.",
                details={"lines": run.corrupt_lines},
            )
        )
    return notes
