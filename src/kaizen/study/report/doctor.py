"""Each variant's doctor findings, grouped over seeds, for the report."""

from __future__ import annotations

from typing import Any

from kaizen.doctor import diagnose
from kaizen.study.results import Results


def doctor_findings(results: Results) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Each variant's doctor findings, grouped over seeds: ({variant: [finding]}, a note on runs it could not
    diagnose).

    A finding is {severity, title, evidence (of the first seed showing it), seeds (how many showed it)}.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for variant in results.variants:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for run in variant.runs:
            if run.status == "not run" or not (run.path / "meta.json").is_file():
                continue
            try:
                findings = diagnose(run.path)
            except Exception as error:  # a finding the doctor cannot make must not lose the report
                problems.append(f"{variant.id}/seed{run.seed}: {type(error).__name__}: {error}")
                continue
            for finding in findings:
                key = (str(getattr(finding, "severity", "")), str(getattr(finding, "title", finding)))
                entry = found.setdefault(
                    key,
                    {
                        "severity": key[0],
                        "title": key[1],
                        "evidence": str(getattr(finding, "evidence", "")),
                        "seeds": 0,
                    },
                )
                entry["seeds"] += 1
        grouped[variant.id] = list(found.values())
    note = f"doctor could not read {len(problems)} run(s): {problems[0]}" if problems else ""
    return grouped, note
