"""The report of a study: a terminal table, results.csv, report.md and a self-contained report.html.

Everything is read from the study directory (study.json and the run directories), so a report can be rebuilt
at any time with another metric, correction or interval (`kaizen report DIR`). The figures (bars.png: the
metric per variant with 95% intervals; curves.png: learning curves per variant, mean over seeds with a ±1 std
band; datacurve.png for data curves) are written beside the report and embedded in the HTML as base64, so
report.html is one file that can be mailed. Each variant's doctor findings are included.

One module per rendering: `text` (the words and numbers they share), `console`, `csvfile`, `markdown`,
`html`, `figures` and `doctor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaizen.study.datacurve import Curve, analyse
from kaizen.study.report.console import render_table
from kaizen.study.report.csvfile import results_csv
from kaizen.study.report.doctor import doctor_findings
from kaizen.study.report.figures import bars_png, curves_png, datacurve_png
from kaizen.study.report.html import html_report
from kaizen.study.report.markdown import markdown
from kaizen.study.report.text import headline
from kaizen.study.results import Results, collect
from kaizen.track import rundir


@dataclass
class Report:
    """The results and the files written for them."""

    results: Results
    files: list[Path]
    curve: Curve | None = None
    doctor_note: str = ""


def write_report(
    study_dir: Path | str,
    metric: str | None = None,
    correction: str | None = None,
    interval: str | None = None,
) -> Report:
    """Collect a study's results (metric, correction and interval default to the study's own) and write
    results.csv, report.md, report.html and the figures."""
    results = collect(study_dir, metric, correction, interval)
    path = results.path
    curve = analyse(results) if results.study.get("kind") == "datacurve" else None
    images = {"bars.png": bars_png(results), "curves.png": curves_png(results)}
    if curve is not None:
        images = {"datacurve.png": datacurve_png(curve, results), **images}
    for name, data in images.items():
        rundir.atomic_write_bytes(path / name, data)
    findings, doctor_note = doctor_findings(results)
    rundir.atomic_write_text(path / "results.csv", results_csv(results))
    rundir.atomic_write_text(
        path / "report.md", markdown(results, curve, list(images), findings, doctor_note)
    )
    rundir.atomic_write_text(path / "report.html", html_report(results, curve, images, findings, doctor_note))
    files = [
        path / "results.csv",
        path / "report.md",
        path / "report.html",
        *(path / name for name in images),
    ]
    return Report(results, files, curve, doctor_note)


__all__ = ["Report", "headline", "render_table", "write_report"]
