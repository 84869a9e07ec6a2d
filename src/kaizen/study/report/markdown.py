"""report.md: the report as markdown, figures linked beside it."""

from __future__ import annotations

from typing import Any

from kaizen.study.datacurve import Curve
from kaizen.study.report.text import (
    describe_study,
    failures,
    headline,
    method_note,
    sections,
    table_rows,
    value_text,
)
from kaizen.study.results import Results


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(
    results: Results,
    curve: Curve | None,
    images: list[str],
    findings: dict[str, list[dict[str, Any]]],
    doctor_note: str,
) -> str:
    """report.md: the same content as the HTML, with the figures as links to the PNG files beside it."""
    study = results.study
    parts = [f"# {study.get('title', 'study')}", ""]
    if study.get("question"):
        parts += [f"**{study['question']}**", ""]
    parts += [f"- {line}" for line in describe_study(results)] + [""]
    parts += ["## Answer", ""]
    if curve is not None:
        parts += [f"**{curve.reading}**", ""]
    parts += [f"- {line}" for line in headline(results)] + [""]
    rows = table_rows(results)
    parts += [
        "## Results",
        "",
        _md_table(list(rows[0]), [list(r.values()) for r in rows]) if rows else "",
        "",
    ]
    parts += ["## Figures", ""] + [f"![{name}]({name})" for name in images] + [""]
    for title, lines in sections(results):
        parts += [f"## {title}", ""] + [f"- {line}" for line in lines] + [""]
    parts += ["## Config difference from the baseline", ""]
    for variant in results.variants:
        if variant.id == results.baseline.id:
            continue
        diff = variant.config_diff
        parts += [
            f"**{variant.id}**: "
            + (", ".join(f"`{k}` {value_text(a)} → {value_text(b)}" for k, a, b in diff) or "same config")
        ]
        parts += [""]
    parts += ["## Doctor", ""]
    if doctor_note:
        parts += [f"_{doctor_note}_", ""]
    for variant in results.variants:
        entries = findings.get(variant.id, [])
        parts += [f"**{variant.id}**:" + ("" if entries else " no findings")]
        parts += [
            f"- {e['severity']}: {e['title']} ({e['seeds']}/{len(variant.runs)} seeds) — {e['evidence']}"
            for e in entries
        ]
        parts += [""]
    failed = failures(results)
    if failed:
        parts += ["## Failures", "", _md_table(["variant", "run", "status", "error"], failed), ""]
    parts += ["## Method", ""] + [f"{paragraph}\n" for paragraph in method_note(results)]
    return "\n".join(parts)
