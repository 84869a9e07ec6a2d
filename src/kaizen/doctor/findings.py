"""A finding: one problem the doctor names, with its evidence, why it matters and the overrides to try."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("critical", "warning", "info")


@dataclass
class Finding:
    """One diagnosed problem (or, at severity info, a note about the diagnosis itself).

    `evidence` is one line of numbers, layers and epochs for people; `details` holds the same numbers for
    programs. `recommendations` are `dotted.key=value` overrides valid for `Config.override`, best first;
    each one is a change to the run's config, to try on its own (`kaizen doctor RUN --verify`).
    """

    severity: str  # info | warning | critical
    code: str
    title: str
    evidence: str
    explanation: str
    recommendations: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def rank(self) -> int:
        """0 for critical, 1 for warning, 2 for info: the order findings are shown in."""
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain data (JSON ready)."""
        return asdict(self)
