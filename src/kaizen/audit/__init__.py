"""Data audit: wrong labels, duplicates, train/test leaks, outliers, class balance and the highest losses.

    from kaizen import Config
    from kaizen.audit import run_audit

    result = run_audit(Config(), "audits/digits", folds=5)
    print(result.counts, result.out_dir / "report.html")

K fold models (ordinary runs under `DIR/runs/`, trained in parallel and resumable like `kaizen compare`) give
every training example out-of-fold probabilities and every example penultimate-layer features
(`kaizen.audit.folds`); the findings come from those and the pixels (`kaizen.audit.findings`) and are written
as issues.csv, audit.json and report.html (`kaizen.audit.report`). With `fix`, keep.txt lists the training
examples that remain once the FIXABLE issues are dropped; `data.keep` or `data.exclude` trains on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen import registry
from kaizen.audit import findings, report
from kaizen.audit.folds import AUDIT_OVERRIDES, audit_config, check_folds, fold_outputs, train_folds
from kaizen.config import Config
from kaizen.data import to_float
from kaizen.data.selection import AUDIT_FILE, FIXABLE
from kaizen.doctor.hints import comparable_data
from kaizen.study.compare import Event, check_workers
from kaizen.track import rundir

ISSUES_FILE = "issues.csv"
KEEP_FILE = "keep.txt"
REPORT_FILE = "report.html"


@dataclass
class AuditResult:
    """What an audit found: counts per issue kind, the issues, the directory, and keep.txt's size (--fix)."""

    out_dir: Path
    counts: dict[str, int]
    issues: list[findings.Issue]
    summary: dict[str, Any]
    kept: int | None
    trained: int
    reused: int


def run_audit(
    cfg: Config,
    out_dir: Path | str,
    folds: int = 5,
    workers: int | None = None,
    budget: int | None = None,
    fix: bool = False,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Audit the training data of `cfg` with `folds` fold models under `out_dir`; write the audit's files."""
    began = time.perf_counter()
    findings._cleanlab()  # fail before training when cleanlab is missing
    check_workers(workers)
    out_dir = Path(out_dir)
    audited = audit_config(cfg, budget)
    raw = registry.DATASETS.create(audited.data.name, audited.data)
    check_folds(folds, raw.train_y, list(raw.class_names))
    outcome = train_folds(audited, folds, out_dir, workers, on_event, on_start)
    outputs = fold_outputs(audited, folds, out_dir)
    labels = outputs.data.y_train.numpy()
    x_train, x_test = to_float(raw.images("train")), to_float(raw.images("test"))  # decoded, as in the files
    context = findings.AuditContext(
        labels, outputs.probs, outputs.loss, outputs.train_features, x_train, x_test
    )
    issues = findings.find_issues(context)
    counts = {kind: sum(issue.issue == kind for issue in issues) for kind in findings.KINDS}
    kept = None
    if fix:
        dropped = {issue.index for issue in issues if issue.issue in FIXABLE}
        paths = (
            raw.train_paths if raw.train_paths is not None and len(raw.train_paths) == len(labels) else None
        )
        kept = report.write_keep(out_dir / KEEP_FILE, len(labels), dropped, paths, cfg.data.path)
    summary = {
        "config_name": cfg.run_name(),
        "counts": counts,
        "data": {
            "name": cfg.data.name,
            "source": raw.source,
            "train_examples": len(labels),
            "test_examples": len(outputs.data.y_test),
            "class_names": list(raw.class_names),
        },
        "class_balance": findings.class_balance(labels, outputs.data.num_classes),
        "settings": {
            "folds": folds,
            "epochs": audited.train.epochs,
            "seed": audited.train.seed,
            "split_seed": audited.data.split_seed,
            "fold_overrides": AUDIT_OVERRIDES,
            "data_config": comparable_data(cfg.data),  # what doctor matches a run against
            "thresholds": {
                "near_pixel_cosine": findings.NEAR_PIXEL,
                "outlier_neighbours": findings.OUTLIER_NEIGHBOURS,
                "outlier_mads": findings.OUTLIER_MADS,
                "top_overall": findings.TOP_OVERALL,
                "top_per_class": findings.TOP_PER_CLASS,
            },
        },
        "out_of_fold_acc": float((outputs.probs.argmax(axis=1) == labels).mean()),
        "runs": [str(path) for path in outputs.run_dirs],
        "fix": None if kept is None else {"dropped_kinds": list(FIXABLE), "kept": kept, "file": KEEP_FILE},
        "seconds": round(time.perf_counter() - began, 1),
    }
    report.write_issues(out_dir / ISSUES_FILE, issues, raw)
    report.write_html(out_dir / REPORT_FILE, summary, issues, raw)
    rundir.write_json(out_dir / AUDIT_FILE, summary)  # last: its presence means the audit is complete
    return AuditResult(out_dir, counts, issues, summary, kept, outcome.ran, outcome.skipped)


__all__ = ["AuditResult", "run_audit"]
