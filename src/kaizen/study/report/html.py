"""report.html: one self-contained page (inline CSS, figures as base64)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any

from kaizen.study.datacurve import Curve
from kaizen.study.report.text import (
    correction_text,
    describe_study,
    failures,
    headline,
    is_accuracy,
    method_note,
    sections,
    status_text,
    table_rows,
    value_text,
)
from kaizen.study.results import Results
from kaizen.study.verdict import COLOURS

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1180px;margin:0 auto;padding:28px 32px 60px;background:#fff;min-height:100vh}
h1{margin:0 0 6px;font-size:26px}h2{margin:34px 0 10px;font-size:19px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.question{font-size:17px;color:#33404d;margin:4px 0 10px}.meta{color:#5b6672;font-size:13px;line-height:1.6}
.answer{background:#eef6ff;border-left:4px solid #2f7bd8;padding:10px 16px;margin:18px 0;border-radius:4px}
.answer p{margin:5px 0}.reading{font-weight:600;font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:6px 0;width:100%}
th,td{border-bottom:1px solid #e6e9ed;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;white-space:nowrap}td{overflow-wrap:anywhere}td.nowrap{white-space:nowrap}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.baseline td{background:#fafbe8}tr.failed td{background:#fdeeee}
.tag{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;white-space:nowrap}
.better{background:#d9f2dd;color:#17692b}.worse{background:#fbdcdc;color:#9c1c1c}.failed{background:#fbdcdc;color:#9c1c1c}
.same{background:#eceff2;color:#4a5560}.base{background:#f3f0c9;color:#6b5e00}
figure{margin:14px 0}img{display:block;max-width:100%;border:1px solid #e3e6ea;border-radius:4px;margin:8px auto}
figcaption{text-align:center}
code{background:#f1f3f6;padding:1px 4px;border-radius:3px;font-size:12px}
.error{color:#9c1c1c;font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-word}
.note{color:#5b6672;font-size:13px;line-height:1.55}
"""

# the verdict cell's colour: decided rows by kaizen.study.verdict.COLOURS, the baseline and lost runs by state
_TAGS = {"green": "better", "red": "worse"}
_STATE_TAGS = {"baseline": "base", "failed": "failed", "missing": "failed"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(
    header: list[str], rows: list[list[str]], row_class: Callable[[int], str] = lambda i: ""
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f'<tr class="{row_class(i)}">' + "".join(row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(
    results: Results,
    curve: Curve | None,
    images: dict[str, bytes],
    findings: dict[str, list[dict[str, Any]]],
    doctor_note: str,
) -> str:
    """report.html: one self-contained page (inline CSS, figures as base64 data URIs, no links to files)."""
    study = results.study
    title = study.get("title", "study")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>kaizen · {_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
    ]
    if study.get("question"):
        out.append(f'<p class="question">{_e(study["question"])}</p>')
    out.append('<div class="meta">' + "<br>".join(_e(line) for line in describe_study(results)) + "</div>")
    out.append('<div class="answer">')
    if curve is not None:
        out.append(f'<p class="reading">{_e(curve.reading)}</p>')
    out += [f"<p>{_e(line)}</p>" for line in headline(results)]
    out.append("</div>")

    out += _results_section(results)
    out += _figures_section(images)
    for section, lines in sections(results):
        out.append(f"<h2>{_e(section)}</h2>")
        out.append("<ul>" + "".join(f'<li class="note">{_e(line)}</li>' for line in lines) + "</ul>")

    out += _config_diff_section(results)
    out += _doctor_section(results, findings, doctor_note)
    out += _failures_section(results)
    out.append("<h2>Method</h2>")
    out += [f'<p class="note">{_e(paragraph)}</p>' for paragraph in method_note(results)]
    out.append(
        f'<p class="note">Study directory: <code>{_e(results.path)}</code> · run directories under '
        "<code>runs/&lt;variant&gt;/seed&lt;k&gt;/</code> · made by kaizen.</p>"
    )
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _results_section(results: Results) -> list[str]:
    """The results table, one row per variant, with the verdicts and a note on the columns."""
    out: list[str] = []
    out.append("<h2>Results</h2>")
    rows = table_rows(results)
    numeric = {
        results.metric,
        "95% CI",
        "Δ vs baseline",
        "Δ CI (matches p adj)",
        "CI level",
        "p",
        "p adj",
        "P(beats)",
        "Δ CI (test examples)",
        "g",
        "gap",
        "s/run",
        "runs",
        "rank",
    }
    columns = [column for column in rows[0] if column != "status"] if rows else []
    cells, classes = [], []
    for row, variant in zip(rows, results.ranked()):
        line = []
        for column in columns:
            text = row[column]
            if column == "verdict":
                tag = _STATE_TAGS.get(text) or _TAGS.get(COLOURS.get(text, ""), "same")
                line.append(f'<td><span class="tag {tag}">{_e(text)}</span></td>')
            else:
                kind = "num" if column in numeric else "nowrap" if column == "test" else ""
                line.append(f'<td class="{kind}">{_e(text)}</td>')
        cells.append(line)
        failed = variant.status == "failed"
        classes.append("baseline" if variant is results.baseline else "failed" if failed else "")
        if variant.status != "done":  # the state and the first error on a line of its own, under the row
            cells.append(
                [f'<td></td><td colspan="{len(columns) - 1}" class="error">{_e(status_text(variant))}</td>']
            )
            classes.append(classes[-1])
    out.append(_html_table(columns, cells, lambda index: classes[index]))
    out.append(
        f'<p class="note">Δ: {"percentage points" if is_accuracy(results.metric) else "difference"} '
        f"against the baseline; Δ CI: from the same test, at the level (CI level) that matches p adj, so it "
        f"excludes 0 exactly when the verdict is better or worse; p: two-sided t-test; p adj: "
        f"{_e(correction_text(results))}; P(beats): share of "
        "seed pairs the variant wins; g: Hedges' g. See Method below.</p>"
    )
    return out


def _figures_section(images: dict[str, bytes]) -> list[str]:
    """The figures, inline as base64 PNGs, each with its caption."""
    out: list[str] = []
    out.append("<h2>Figures</h2>")
    captions = {
        "datacurve.png": "The metric and the train/validation gap against training-set size.",
        "bars.png": "The metric per variant: bar = mean, whisker = 95% confidence interval, dots = seeds; "
        "dashed line = baseline mean.",
        "curves.png": "Learning curves per variant: mean over seeds, shaded band = ±1 standard deviation.",
    }
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        out.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{encoded}">')
        out.append(f'<figcaption class="note">{_e(captions.get(name, name))}</figcaption></figure>')
    return out


def _config_diff_section(results: Results) -> list[str]:
    """What each variant changes against the baseline, key by key."""
    out: list[str] = []
    out.append("<h2>Config difference from the baseline</h2>")
    diff_rows = []
    for variant in results.variants:
        if variant.id == results.baseline.id:
            continue
        if not variant.config_diff:
            diff_rows.append(
                [f"<td>{_e(variant.id)}</td>", "<td>—</td>", "<td>same config</td>", "<td></td>"]
            )
        for index, (key, base_value, value) in enumerate(variant.config_diff):
            diff_rows.append(
                [
                    f"<td>{_e(variant.id) if index == 0 else ''}</td>",
                    f"<td><code>{_e(key)}</code></td>",
                    f"<td>{_e(value_text(base_value))}</td>",
                    f"<td><b>{_e(value_text(value))}</b></td>",
                ]
            )
    out.append(_html_table(["variant", "key", f"baseline ({results.baseline.id})", "variant"], diff_rows))
    return out


def _doctor_section(
    results: Results, findings: dict[str, list[dict[str, Any]]], doctor_note: str
) -> list[str]:
    """Each variant's doctor findings."""
    out: list[str] = []
    out.append("<h2>Doctor findings</h2>")
    if doctor_note:
        out.append(f'<p class="note">{_e(doctor_note)}</p>')
    doctor_rows = []
    for variant in results.variants:
        entries = findings.get(variant.id, [])
        if not entries:
            doctor_rows.append(
                [
                    f"<td>{_e(variant.id)}</td>",
                    "<td></td>",
                    "<td>no findings</td>",
                    "<td></td>",
                    "<td></td>",
                ]
            )
        for index, entry in enumerate(entries):
            doctor_rows.append(
                [
                    f"<td>{_e(variant.id) if index == 0 else ''}</td>",
                    f"<td>{_e(entry['severity'])}</td>",
                    f"<td>{_e(entry['title'])}</td>",
                    f'<td class="num">{entry["seeds"]}/{len(variant.runs)}</td>',
                    f"<td>{_e(entry['evidence'])}</td>",
                ]
            )
    out.append(_html_table(["variant", "severity", "finding", "seeds", "evidence (first seed)"], doctor_rows))
    return out


def _failures_section(results: Results) -> list[str]:
    """Runs that failed, with their first error (nothing when none did)."""
    out: list[str] = []
    failed = failures(results)
    if failed:
        out.append("<h2>Failures</h2>")
        out.append(
            _html_table(
                ["variant", "run", "status", "error"],
                [
                    [
                        f"<td>{_e(a)}</td>",
                        f'<td class="num">{_e(b)}</td>',
                        f"<td>{_e(c)}</td>",
                        f'<td class="error">{_e(d)}</td>',
                    ]
                    for a, b, c, d in failed
                ],
            )
        )
    return out
