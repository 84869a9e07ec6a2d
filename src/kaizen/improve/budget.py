"""The budget of an improve: device-seconds of training, or multiples of one run of the starting config.

`parse_budget("20m")` reads the user's text; a `Ledger` charges every run the training seconds its
summary.json records (`timings.train_seconds`), keeps RESERVE of the total for the final confirmation, and
answers whether a run can still be afforded before it starts (from an estimate: measured seconds per epoch
times epochs), so the budget is overshot only by what the estimates missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kaizen.errors import KaizenError

RESERVE = 0.15  # of the total, kept for the final confirmation (completing the start's seeds, a reproduction)
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FORM = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h|x)\s*$")
USAGE = "give device-seconds of training (90s, 20m, 1h) or multiples of one run of the starting config (8x)"


@dataclass(frozen=True)
class Budget:
    """What the user asked for: `seconds` of training, or `runs` multiples of one starting run."""

    text: str
    seconds: float | None = None
    runs: float | None = None

    def total(self, one_run_seconds: float) -> float:
        """The budget in seconds, given what one run of the starting config takes."""
        return self.seconds if self.seconds is not None else (self.runs or 0.0) * one_run_seconds


def parse_budget(text: str | float | int) -> Budget:
    """`20m`, `90s`, `1h`, `8x` (a bare number is seconds); KaizenError naming the text otherwise."""
    raw = str(text).strip()
    if re.fullmatch(r"[0-9]*\.?[0-9]+", raw):
        raw += "s"
    match = _FORM.match(raw.lower())
    if raw.startswith("-"):
        raise KaizenError(f"--budget {text}: a budget cannot be negative; {USAGE}")
    if match is None:
        raise KaizenError(f"--budget {text!r} is not a budget; {USAGE}")
    value, unit = float(match.group(1)), match.group(2)
    if value <= 0:
        raise KaizenError(f"--budget {text}: nothing can be trained with no budget; {USAGE}")
    if unit == "x":
        if value < 1:
            raise KaizenError(
                f"--budget {text} is smaller than one run of the starting config; give at least 1x (default 8x)"
            )
        return Budget(str(text), runs=value)
    return Budget(str(text), seconds=value * UNITS[unit])


@dataclass
class Ledger:
    """Every charge (a label and the training seconds it cost) against a total with a reserve."""

    total: float = 0.0
    entries: list[tuple[str, float]] = field(default_factory=list)

    @property
    def spent(self) -> float:
        return sum(seconds for _, seconds in self.entries)

    @property
    def left(self) -> float:
        return self.total - self.spent

    @property
    def reserve(self) -> float:
        return RESERVE * self.total

    def charge(self, label: str, seconds: float) -> None:
        """Record what a run cost."""
        self.entries.append((label, float(seconds)))

    def affords(self, estimate: float, final: bool = False) -> bool:
        """Whether `estimate` seconds fit: before the final step only outside the reserve."""
        limit = self.total if final else self.total - self.reserve
        return self.spent + estimate <= limit

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return {
            "total_seconds": round(self.total, 3),
            "reserve_seconds": round(self.reserve, 3),
            "spent_seconds": round(self.spent, 3),
            "overshoot": round(max(0.0, self.spent - self.total) / self.total, 4) if self.total else 0.0,
            "entries": [{"label": label, "seconds": round(seconds, 3)} for label, seconds in self.entries],
        }
