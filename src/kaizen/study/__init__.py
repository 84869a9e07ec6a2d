"""Prove which technique helps: compare variants × seeds, built-in studies of the seeds, data curves.

Python mirrors the command line:

    from kaizen import Config
    from kaizen.study import compare_plan, execute

    plan = compare_plan(Config(), ["model.activation=sigmoid,relu"], seeds=3)
    outcome, report = execute(plan, "studies/act", workers=2)
    print(report.results.ranked()[0].id)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kaizen.config import Config
from kaizen.study.compare import Event, Outcome, Plan, Variant, expand, make_plan, parse_vary, run_plan
from kaizen.study.datacurve import datacurve_plan, parse_fractions
from kaizen.study.recipes import RECIPES, get_recipe, study_plan
from kaizen.study.report import Report, write_report


def compare_plan(
    base: Config, vary: list[str], mode: str = "grid", seeds: int = 3, metric: str = "test.acc"
) -> Plan:
    """The Plan of `--vary key=v1,v2` options on `base` (validated: keys, values, seeds, metric)."""
    parsed = [parse_vary(text) for text in vary]
    variants = expand(parsed, mode)
    return make_plan(
        base,
        variants,
        seeds,
        metric,
        drop_same_as_baseline=mode == "one-at-a-time",
        title=f"compare · {', '.join(key for key, _ in parsed)}",
        question=f"Which setting of {', '.join(key for key, _ in parsed)} works best ({mode})?",
        description=f"{base.run_name()} with {'; '.join(vary)}",
        extra={"mode": mode, "vary": list(vary)},
    )


def execute(
    plan: Plan,
    out_dir: Path | str,
    workers: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    backend: str = "local",
    address: str | None = None,
) -> tuple[Outcome, Report]:
    """Run a plan (resuming what is finished) on `backend` (local or ray) and write its report; return both."""
    outcome = run_plan(plan, out_dir, workers, on_event, on_start, backend, address)
    return outcome, write_report(out_dir)


__all__ = [
    "RECIPES",
    "Event",
    "Outcome",
    "Plan",
    "Report",
    "Variant",
    "compare_plan",
    "datacurve_plan",
    "execute",
    "get_recipe",
    "make_plan",
    "parse_fractions",
    "run_plan",
    "study_plan",
    "write_report",
]
