"""The audit's files: issues.csv (one row per finding), audit.json (counts and settings), keep.txt (--fix) and
a self-contained report.html (pictures embedded as PNG) with an image grid per issue kind and the class balance.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from kaizen.audit.findings import KINDS, Issue
from kaizen.data import RawData, to_float
from kaizen.doctor.findings import kind_table
from kaizen.track import rundir

GRID_MAX = 48  # pictures per issue kind in the report (the CSV lists every finding)
TILE = 64  # pixels: small images are enlarged (nearest neighbour) to about this size


def write_issues(path: Path, issues: list[Issue], raw: RawData) -> None:
    """issues.csv: split,index,path,label,suggested,issue,score; kinds in KINDS order, worst first in each."""
    names = raw.class_names
    rows = [["split", "index", "path", "label", "suggested", "issue", "score"]]
    for issue in sorted(issues, key=lambda item: (KINDS.index(item.issue), -item.score, item.index)):
        rows.append(
            [
                issue.split,
                str(issue.index),
                _path(raw, issue.split, issue.index),
                names[issue.label],
                "" if issue.suggested is None else names[issue.suggested],
                issue.issue,
                f"{issue.score:.6g}",
            ]
        )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    rundir.atomic_write_text(path, buffer.getvalue())


def write_keep(
    path: Path, count: int, dropped: set[int], paths: list[str] | None = None, root: str | Path | None = None
) -> int:
    """keep.txt: the training examples not in `dropped`, one a line, each named by its file relative to
    `root` (the data folder) when the data has `paths`, else as `row N`; returns how many are kept."""
    from kaizen.data.selection import keep_text

    kept = [index for index in range(count) if index not in dropped]
    rundir.atomic_write_text(path, keep_text(kept, paths, root))
    return len(kept)


def write_html(path: Path, summary: dict[str, Any], issues: list[Issue], raw: RawData) -> None:
    """report.html: counts, the class-balance chart and an image grid per issue kind, self-contained."""
    counts = summary["counts"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kaizen audit</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}img{max-width:100%}"
        "td,th{padding:2px 10px;text-align:left}.grid{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;text-align:center;font-size:11px;width:96px}figure img{image-rendering:pixelated}"
        ".pair{display:flex;gap:2px;background:#eef;padding:2px}</style></head><body>",
        f"<h1>Data audit · {html.escape(summary['config_name'])}</h1>",
        f"<p>{html.escape(summary['data']['source'])}</p>",
        f"<p>{summary['settings']['folds']} fold models ({summary['settings']['epochs']} epochs each); every "
        "training example judged by the model that did not train on it. Index = the example's row in its "
        "split (its file's row, or its place in the sorted file list).</p>",
        "<table><tr><th>issue</th><th>examples</th></tr>",
        *[f"<tr><td>{kind}</td><td>{counts[kind]}</td></tr>" for kind in KINDS],
        "</table>",
    ]
    fix = summary.get("fix")
    if fix:
        parts.append(
            f"<p><b>--fix</b>: dropped the {', '.join(fix['dropped_kinds'])} issues; keep.txt keeps "
            f"{fix['kept']:,} of {summary['data']['train_examples']:,} training examples.</p>"
        )
    balance = summary["class_balance"]
    parts.append(
        f"<h2>Class balance</h2><p>largest / smallest class: {balance['imbalance']:.2f}</p>"
        f"<img src='data:image/png;base64,{_balance_chart(balance['counts'], raw.class_names)}'>"
    )
    for kind in KINDS:
        found = sorted((issue for issue in issues if issue.issue == kind), key=lambda item: -item.score)
        entry = kind_table("data")[kind]
        parts.append(f"<h2>{entry.title} ({len(found)})</h2><p>{html.escape(entry.caption)}</p>")
        if found:
            shown = found[: GRID_MAX // 2 if kind in ("duplicate", "leak") else GRID_MAX]
            parts.append(_grid(shown, raw))
            if len(found) > len(shown):
                parts.append(f"<p>… and {len(found) - len(shown)} more in issues.csv</p>")
    parts.append("</body></html>")
    rundir.atomic_write_text(path, "\n".join(parts))


def _path(raw: RawData, split: str, index: int) -> str:
    paths = getattr(raw, f"{split}_paths", None)
    return str(paths[index]) if paths is not None else ""


def _image(raw: RawData, split: str, index: int) -> np.ndarray:
    image = np.clip(to_float(raw.images(split, np.array([index])))[0], 0, 1)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)[..., :3]


def _name(raw: RawData, split: str, index: int) -> str:
    path = _path(raw, split, index)
    return Path(path).name[:18] if path else f"{split} {index}"


def _grid(issues: list[Issue], raw: RawData) -> str:
    """HTML figures of the issues' images, each captioned; a duplicate or leak beside the example it copies."""
    names = raw.class_names
    cells = []
    for issue in issues:
        label = names[issue.label]
        if issue.partner is not None:
            other_split, other = issue.partner
            other_label = names[(raw.train_y if other_split == "train" else raw.test_y)[other]]
            pair = [
                _figure(raw, issue.split, issue.index, f"{label} · {issue.score:.3f}"),
                _figure(raw, other_split, other, other_label),
            ]
            cells.append(f"<div class='pair'>{''.join(pair)}</div>")
        else:
            suggestion = "" if issue.suggested is None else f" → {names[issue.suggested]}"
            cells.append(_figure(raw, issue.split, issue.index, f"{label}{suggestion} · {issue.score:.3g}"))
    return f"<div class='grid'>{''.join(cells)}</div>"


def _figure(raw: RawData, split: str, index: int, caption: str) -> str:
    from PIL import Image

    image = _image(raw, split, index)
    pixels = Image.fromarray(np.round(image * 255).astype(np.uint8))
    scale = max(1, TILE // max(pixels.size))
    pixels = pixels.resize((pixels.width * scale, pixels.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    name = html.escape(_name(raw, split, index))
    return (
        f"<figure><img src='data:image/png;base64,{encoded}' alt='{name}'>"
        f"<figcaption>{name}<br>{html.escape(caption)}</figcaption></figure>"
    )


def _balance_chart(counts: list[int], class_names: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(counts) + 2), 3))
    ax.bar(range(len(counts)), counts, color="#4c72b0")
    ax.set_xticks(
        range(len(counts)), [name[:12] for name in class_names], rotation=45 if len(counts) > 12 else 0
    )
    ax.set_xlabel("class")
    ax.set_ylabel("training examples")
    ax.axhline(float(np.mean(counts)), color="gray", linestyle="--", linewidth=1, label="mean")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return _png(figure)


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
