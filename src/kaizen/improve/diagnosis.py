"""The one place improve reads the doctor: a run's findings as (code, title, evidence, overrides).

Improve depends on nothing else of a finding, so the doctor's internals can change behind this adapter. The
doctor reads the validation split, never the test split, so asking it keeps improve's test split unread until
its final step (tests/test_improve.py checks every read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """A doctor finding as improve uses it: what it is, its evidence, and the config overrides it suggests."""

    code: str
    title: str
    evidence: str
    overrides: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "title": self.title,
            "evidence": self.evidence,
            "overrides": list(self.overrides),
        }


def findings_of(run_dir: str | Path) -> list[Problem]:
    """The doctor's findings on a finished run, most severe first."""
    from kaizen.doctor import diagnose

    return [
        Problem(finding.code, finding.title, finding.evidence, tuple(fix.override for fix in finding.fixes))
        for finding in diagnose(run_dir)
    ]
