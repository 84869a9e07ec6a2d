"""Prove which technique helps: compare variants × seeds, built-in studies of the seeds, data curves.

Python mirrors the command line:

    from kaizen import Config
    from kaizen.study import compare_plan, execute

    plan = compare_plan(Config(), ["model.activation=sigmoid,relu"], seeds=3)
    outcome, report = execute(plan, "studies/act", workers=2)
    print(report.results.ranked()[0].id)
"""

from __future__ import annotations

from kaizen.config import Config
from kaizen.study.compare import Event, Outcome, Plan, Variant, expand, make_plan, parse_vary, run_plan
from kaizen.study.datacurve import datacurve_plan, parse_fractions
from kaizen.study.recipes import RECIPES, get_recipe, study_plan
from kaizen.study.report import Report, write_report
from kaizen.study.session import TuneSpec, execute, parse_seeds, run_study, tune_variants


def compare_plan(
    base: Config,
    vary: list[str],
    mode: str = "grid",
    seeds: int = 3,
    metric: str = "test.acc",
    split_seeds: int = 0,
) -> Plan:
    """The Plan of `--vary key=v1,v2` options on `base` (validated: keys, values, seeds, metric); with
    `split_seeds` N every seed also runs on N data splits."""
    parsed = [parse_vary(text) for text in vary]
    variants = expand(parsed, mode)
    return make_plan(
        base,
        variants,
        seeds,
        metric,
        drop_same_as_baseline=mode == "one-at-a-time",
        split_seeds=split_seeds,
        title=f"compare · {', '.join(key for key, _ in parsed)}",
        question=f"Which setting of {', '.join(key for key, _ in parsed)} works best ({mode})?",
        description=f"{base.run_name()} with {'; '.join(vary)}",
        extra={"mode": mode, "vary": list(vary)},
    )


__all__ = [
    "RECIPES",
    "Event",
    "Outcome",
    "Plan",
    "Report",
    "TuneSpec",
    "Variant",
    "compare_plan",
    "datacurve_plan",
    "execute",
    "get_recipe",
    "make_plan",
    "parse_fractions",
    "parse_seeds",
    "run_plan",
    "run_study",
    "study_plan",
    "tune_variants",
    "write_report",
]
