"""The doctor's terminal output (rich) and its JSON form."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kaizen.doctor import top_recommendation
from kaizen.doctor.findings import Finding
from kaizen.doctor.record import RunRecord

STYLES = {"critical": "bold red", "warning": "bold yellow", "info": "bold blue"}


def headline(run: RunRecord) -> str:
    """One line about the run: its folder, status, epochs and scores."""
    parts = [f"{run.path}", run.status, f"{len(run.train)}/{run.config.train.epochs} epochs"]
    if run.val:
        parts.append(f"best val acc {max(row['acc'] for row in run.val):.1%}")
    test = run.summary.get("test", {}).get("acc")
    if test is not None:
        parts.append(f"test acc {test:.1%}")
    return " · ".join(parts)


def render_findings(run: RunRecord, findings: list[Finding]) -> Group:
    """The findings, most severe first, each with evidence, explanation and the overrides to try."""
    lines: list[Any] = [Text(f"kaizen doctor · {headline(run)}", style="bold")]
    problems = [finding for finding in findings if finding.severity != "info"]
    if not findings:
        lines.append(
            Text("no problems found: gradients, units, learning rate and fit look healthy", style="green")
        )
    elif not problems:
        lines.append(Text("no warnings; notes on the diagnosis below", style="green"))
    for finding in findings:
        lines.append(Text(""))
        title = Text()
        title.append(f"{finding.severity.upper():<8} ", style=STYLES[finding.severity])
        title.append(finding.title, style="bold")
        title.append(f"  [{finding.code}]", style="dim")
        lines.append(title)
        body = Table.grid(padding=(0, 1))  # wrapped lines stay indented under their text
        body.add_column(style="dim", width=9)
        body.add_column()
        body.add_row("evidence", finding.evidence)
        body.add_row("why", finding.explanation)
        for index, fix in enumerate(finding.fixes):
            line = Text(f"--set {fix.override}", style="cyan")
            if fix.reason:
                line.append(f"  ({fix.reason})", style="dim")
            body.add_row("try" if index == 0 else "", line)
        lines.append(body)
    top = top_recommendation(findings)
    if top is not None:
        lines.append(Text(""))
        lines.append(
            Text(
                f"next: kaizen doctor {run.path} --verify   (races the top fixes, starting with --set {top[1]}, "
                "each trained from the run's config and seed with only that change)",
                style="dim",
            )
        )
    return Group(*lines)


def render_checks(checks: list[Finding]) -> Group:
    """`kaizen check`'s report: PASS or FAIL per check with its evidence, the advice under each failure, and
    the count."""
    lines: list[Any] = []
    for check in checks:
        line = Text()
        if check.is_problem:
            line.append("FAIL", style="bold red")
        else:
            line.append("PASS", style="bold green")
        line.append(f" {check.title}: {check.evidence}")
        lines.append(line)
        if check.is_problem:
            lines.append(Text(f"     {check.explanation}", style="yellow"))
    failed = [check.title for check in checks if check.is_problem]
    lines.append(
        Text(
            f"{len(checks) - len(failed)}/{len(checks)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    )
    return Group(*lines)


def findings_json(run: RunRecord, findings: list[Finding]) -> dict[str, Any]:
    """The diagnosis as plain data: the run, its status and every finding."""
    return {
        "run": str(run.path),
        "status": run.status,
        "epochs": len(run.train),
        "findings": [finding.to_dict() for finding in findings],
    }


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (strict JSON has no such numbers), keys as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
