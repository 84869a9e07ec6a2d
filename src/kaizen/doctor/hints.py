"""What the doctor says about data quality: an audit of the run's data on file, or a hint to run one.

The `DataQuality` kind (scope "run") gives info findings for `kaizen doctor`: the counts of an existing audit of the
same data (an `audits/*/audit.json` whose data settings match the run's), or, when there is none and the run's
TOP_LOSSES highest validation losses fall mostly (DOMINANT_SHARE) in two classes, the suggestion to run
`kaizen audit`. The doctor reads the validation split, never the test split: a diagnosis acted on (by hand or by
`kaizen improve`) must not have looked at the test images. Measured on 16 clean digits runs (mlp, simple_cnn,
lenet5, test accuracy 0.90 to 0.98), on their test losses: the two most frequent classes held 0.35 to 0.60 of
the top 20 losses, so 0.75 is beyond what clean data shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kaizen.config import Config, DataConfig
from kaizen.data.selection import AUDIT_FILE
from kaizen.doctor.findings import Finding, Kind, Threshold, finding_kind
from kaizen.doctor.record import RunRecord
from kaizen.errors import KaizenError

AUDITS_DIR = Path("audits")
TOP_LOSSES = 20
DOMINANT_SHARE = Threshold(
    "DOMINANT_SHARE",
    0.75,
    "16 clean digits runs: the two commonest classes held 0.35-0.60 of the top 20 losses",
)
FEW_CLASSES = 2


def comparable_data(data: DataConfig) -> dict[str, Any]:
    """The data settings that decide which examples an audit sees (what a run is matched against)."""
    return {
        key: getattr(data, key) for key in ("name", "root", "path", "test_path", "test_split", "split_seed")
    }


def find_audit(data: DataConfig, audits_dir: Path = AUDITS_DIR) -> tuple[Path, dict[str, Any]] | None:
    """The newest audit under `audits_dir` of the same data as `data`, as (audit.json path, its contents)."""
    wanted = comparable_data(data)
    found = []
    for path in audits_dir.glob(f"*/{AUDIT_FILE}"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("settings", {}).get("data_config") == wanted:
            found.append((path.stat().st_mtime, path, summary))
    return max(found, key=lambda item: item[0])[1:] if found else None


def top_loss_classes(run_path: Path) -> tuple[float, list[str]] | None:
    """(share, class names) of the FEW_CLASSES classes most frequent among the run's TOP_LOSSES highest
    validation losses; None when the run has no model or data to read, or too few validation images."""
    from kaizen.data import load_data
    from kaizen.evaluate import predict_proba
    from kaizen.run import load_run

    try:
        run = load_run(run_path)
        if run.status != "done":
            return None
        model, _ = run.model()
        data = load_data(run.config.data)
    except (KaizenError, OSError):
        return None
    labels = data.y_val.numpy()
    if len(labels) < TOP_LOSSES:
        return None
    probs = predict_proba(model, data.pixels["val"], prepare=data.prepare).numpy()
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))
    counts = np.bincount(labels[np.argsort(-loss)[:TOP_LOSSES]], minlength=data.num_classes)
    top = np.argsort(-counts, kind="stable")[:FEW_CLASSES]
    return float(counts[top].sum() / TOP_LOSSES), [data.class_names[c] for c in top]


@finding_kind
class DataQuality(Kind):
    """An audit of the run's data on file (data_audit), or a hint to run one (losses_in_few_classes)."""

    scope = "run"
    code = "data_quality"
    thresholds = (DOMINANT_SHARE,)

    def run(self, run: RunRecord) -> list[Finding]:
        return doctor_notes(run.path, run.config)


def doctor_notes(run_path: Path, cfg: Config, audits_dir: Path = AUDITS_DIR) -> list[Finding]:
    """Info findings about the run's data: an audit on file, or a suggestion to audit."""
    audit = find_audit(cfg.data, audits_dir)
    if audit is not None:
        path, summary = audit
        counts = summary.get("counts", {})
        shown = ", ".join(f"{kind} {count}" for kind, count in counts.items())
        return [
            Finding(
                "info",
                "data_audit",
                "A data audit of this data is on file",
                f"{path}: {shown}",
                "Training on the cleaned data tells whether the flagged examples hurt: kaizen compare "
                f"--vary data.exclude=null,{path.parent / 'issues.csv'} (see {path.parent / 'report.html'}).",
                details={"audit": str(path), "counts": counts},
            )
        ]
    concentrated = top_loss_classes(run_path)
    if concentrated is None or concentrated[0] < DOMINANT_SHARE:
        return []
    share, classes = concentrated
    return [
        Finding(
            "info",
            "losses_in_few_classes",
            "The highest losses fall in few classes",
            f"{share:.0%} of the {TOP_LOSSES} highest validation losses are of class {' and '.join(classes)}",
            "A few classes holding most of the worst mistakes often means wrong labels, duplicates or strange "
            "images in them: kaizen audit -c <config> lists them with pictures.",
            details={"share": share, "classes": classes},
        )
    ]
