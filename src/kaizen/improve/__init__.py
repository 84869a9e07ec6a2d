"""kaizen improve: check, diagnose, race the fixes with successive halving, adopt only with evidence, repeat.

    journal = kaizen.improve("configs/digits_cnn.yaml", budget="8x", out_dir="improve/digits")
    print(journal["final"]["test_gain"])

Modules: `budget` (the ledger), `diagnosis` (the doctor's findings, through one adapter), `candidates` (the
moves and where they come from), `race` (runs on the compare backends, successive halving), `decide` (the
adoption rule), `loop` (the rounds and the final step), `report` (journal.json and journal.html).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen.config import Config


def improve(
    cfg: Config | str | Path | None = None, budget: str | float = "8x", **options: Any
) -> dict[str, Any]:
    """Improve a config within `budget` and return the journal (also written to DIR/journal.json).

    `budget`: device-seconds of training (`20m`, `90s`, `1h`) or multiples of one run of the start config
    (`8x`). `options`: out_dir (default improve/<run name>), seeds (3), workers (1), backend (local | ray),
    address (a Ray head's host:port), audit, max_candidates (5), on_progress (a function given each progress line).
    """
    from kaizen.improve.loop import improve as run_loop

    return run_loop(cfg, budget, **options)


__all__ = ["improve"]
