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
from kaizen.doctor.verify import Verification

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
        for index, override in enumerate(finding.recommendations):
            body.add_row("try" if index == 0 else "", Text(f"--set {override}", style="cyan"))
        lines.append(body)
    top = top_recommendation(findings)
    if top is not None:
        lines.append(Text(""))
        lines.append(
            Text(
                f"next: kaizen doctor {run.path} --verify   (trains the run's config with --set {top[1]} "
                "and nothing else changed)",
                style="dim",
            )
        )
    return Group(*lines)


def render_verification(result: Verification) -> Group:
    """Before and after: best validation accuracy, test accuracy, final train loss, remaining findings."""
    table = Table(title=f"verify: --set {' --set '.join(result.overrides)}", title_justify="left")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    before, after = result.before, result.after
    rows = [
        ("best val acc", before.best_val_acc, after.best_val_acc, True),
        ("test acc", before.test_acc, after.test_acc, True),
        ("final train loss", before.final_train_loss, after.final_train_loss, False),
    ]
    for label, old, new, percent in rows:
        table.add_row(label, _value(old, percent), _value(new, percent), _change(old, new, percent))
    table.add_row("epochs trained", str(before.epochs), str(after.epochs), "")
    table.add_row("status", before.status, after.status, "")
    table.add_row("findings", _codes(before.findings), _codes(after.findings), "")
    return Group(table, Text(f"before: {before.path}\nafter:  {after.path}", style="dim"))


def _value(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:.4g}"


def _change(old: float | None, new: float | None, percent: bool) -> str:
    if old is None or new is None:
        return ""
    if percent:
        delta = 100 * (new - old)
        style = "green" if delta > 0 else "red" if delta < 0 else ""
        return f"[{style}]{delta:+.1f} pts[/]" if style else f"{delta:+.1f} pts"
    return f"{new - old:+.4g}"


def _codes(findings: list[Finding]) -> str:
    codes = [f"{finding.code} ({finding.severity})" for finding in findings if finding.severity != "info"]
    return "\n".join(codes) or "none"


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
