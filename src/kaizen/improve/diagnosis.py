"""The one place improve reads the doctor: a run's findings as (code, title, evidence, overrides).

Improve depends on nothing else of a finding, so the doctor's internals can change behind this adapter. One
thing is switched off while improve asks: the doctor's data-quality hint (`kaizen.audit.hints`) scores the run's
model on the test split to see whether the worst test losses crowd into two classes, and improve keeps the test
split unread until its final step. (A switch on the doctor itself would be the clean way; this is the one
place to change when it has one.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    from kaizen import diagnose

    with _test_split_unread():
        findings = diagnose(run_dir)
    return [
        Problem(
            str(getattr(finding, "code", "")),
            str(getattr(finding, "title", getattr(finding, "code", ""))),
            str(getattr(finding, "evidence", "")),
            tuple(getattr(finding, "recommendations", ()) or ()),
        )
        for finding in findings
    ]


@contextmanager
def _test_split_unread() -> Iterator[None]:
    """While inside, the doctor's top-test-losses hint finds nothing instead of scoring the test split."""
    from kaizen.audit import hints

    scores_test = hints.top_loss_classes
    hints.top_loss_classes = lambda run_path: None
    try:
        yield
    finally:
        hints.top_loss_classes = scores_test
