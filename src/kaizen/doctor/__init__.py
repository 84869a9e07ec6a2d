"""The doctor: read a run, name each problem with its evidence, and recommend the overrides to try.

    findings = kaizen.diagnose("runs/20250101-120000-digits-mlp")
    for finding in findings:
        print(finding.severity, finding.code, finding.evidence)
        for fix in finding.fixes:  # best first; fix.override is a --set, fix.reason says why
            print("  try --set", fix.override, "-", fix.reason)

`diagnose` runs every finding kind of scope "run" (`kaizen.doctor.findings`; the detectors of
`kaizen.doctor.detectors`, then the notes about the diagnosis itself, then the data-quality hints of `kaizen.doctor.hints`) on the
run's metrics.csv, stats.jsonl and config. `verify.race` trains the top recommendations from the run's seed
and ranks them; `check` and `lr_find` look at a config before a run.
"""

from __future__ import annotations

from pathlib import Path

# Importing them registers the run kinds: detectors first, then the data-quality hints (names in this order).
from kaizen.doctor import detectors, hints  # noqa: F401
from kaizen.doctor.findings import Finding, Fix, kinds
from kaizen.doctor.record import RunRecord, read_run

__all__ = ["Finding", "Fix", "RunRecord", "diagnose", "examine", "read_run", "top_recommendation"]


def diagnose(run_path: str | Path) -> list[Finding]:
    """Return the findings of the run at `run_path`, most severe first (KaizenError if it is not a run)."""
    return examine(read_run(run_path))


def examine(run: RunRecord) -> list[Finding]:
    """Return the findings of an already read run, most severe first (ties: the kinds' registration order)."""
    found: list[tuple[type, Finding]] = []
    for kind in kinds("run"):
        result = kind().run(run)
        for finding in result if isinstance(result, list) else [result] if result is not None else []:
            found.append((kind, finding))
    if any(kind.explains_fit and finding.is_problem for kind, finding in found):
        # The cause already explains why the model does not fit; "train longer" would be the wrong advice.
        found = [(kind, finding) for kind, finding in found if not kind.fit_symptom]
    return sorted((finding for _, finding in found), key=lambda finding: finding.rank)


def top_recommendation(findings: list[Finding]) -> tuple[Finding, str] | None:
    """The first recommendation of the most severe warning or critical finding that has one."""
    for finding in findings:
        if finding.is_problem and finding.recommendations:
            return finding, finding.recommendations[0]
    return None
