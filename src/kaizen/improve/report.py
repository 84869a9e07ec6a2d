"""The journal's files: journal.json (the facts) and journal.html (the same, readable offline, one file)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from kaizen.track import rundir


def _safe(value: Any) -> Any:
    """JSON-ready: NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


def write_outputs(out_dir: Path, journal: dict[str, Any]) -> None:
    """DIR/journal.json and DIR/journal.html."""
    rundir.write_json(out_dir / "journal.json", _safe(journal))
    rundir.atomic_write_text(out_dir / "journal.html", render_html(_safe(journal)))


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _pts(value: Any) -> str:
    return "–" if value is None else f"{100 * value:+.2f}"


def _interval(pair: Any) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "–"
    return f"[{100 * pair[0]:+.2f}, {100 * pair[1]:+.2f}] points"


def _level(pair: Any) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "–"
    return f"[{100 * pair[0]:.2f}%, {100 * pair[1]:.2f}%]"


def _by_seed(values: Any) -> str:
    return ", ".join(f"seed {seed}: {_pct(value)}" for seed, value in (values or {}).items())


def _picture(points: list[dict[str, Any]]) -> str:
    """Validation accuracy of every run against the budget spent when it ended, and the best full-length so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.6))
    styles = {"probe": ("C7", "x"), "rung": ("C0", "o"), "full": ("C2", "s"), "reproduce": ("C3", "D")}
    for kind, (color, marker) in styles.items():
        chosen = [p for p in points if p["kind"] == kind and p["val_acc"] is not None]
        if chosen:
            axes.scatter(
                [p["spent"] for p in chosen],
                [100 * p["val_acc"] for p in chosen],
                c=color,
                marker=marker,
                label=kind,
                s=22,
            )
    best, xs, ys = -1.0, [], []
    for p in points:
        if p["kind"] == "full" and p["val_acc"] is not None and p["val_acc"] > best:
            best = p["val_acc"]
        if best >= 0:
            xs.append(p["spent"])
            ys.append(100 * best)
    if xs:
        axes.step(xs, ys, where="post", color="C2", linewidth=1.2, label="best full-length so far")
    axes.set_xlabel("budget spent (device-seconds of training)")
    axes.set_ylabel("validation accuracy (%)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}"
    ".adopt{color:#176f2c}.reject{color:#9a3b00}"
)


def render_html(journal: dict[str, Any]) -> str:
    """The journal as one self-contained HTML page: the result, the ablation path, each round, the agreement of
    short races with full length, what was not tried, the budget ledger."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>kaizen improve</title><style>{_STYLE}</style>"
        "</head><body>",
        "<h1>kaizen improve: journal</h1>",
        *_result_section(journal),
        *_ablation_section(journal.get("ablation", [])),
    ]
    for entry in journal.get("rounds", []):
        parts += _round_section(entry)
    parts += _closing_sections(journal)
    parts.append("</body></html>")
    return "\n".join(parts)


def _result_section(journal: dict[str, Any]) -> list[str]:
    """The budget spent, the test result (read once, at the end), the reproduction and the picture."""
    e = html.escape
    final = journal.get("final", {})
    ledger = journal.get("ledger", {})
    start, end, gain = final.get("test_start", {}), final.get("test_final", {}), final.get("test_gain", {})
    parts = [
        f"<p>Budget {e(str(journal['budget']['text']))}: {ledger.get('spent_seconds', 0):.1f}s of "
        f"{ledger.get('total_seconds', 0):.1f}s spent (reserve {ledger.get('reserve_seconds', 0):.1f}s for the final "
        f"confirmation; overshoot {100 * ledger.get('overshoot', 0):.1f}%). Seeds {e(str(journal['seeds']))}"
        f"{_second_look(journal)}. "
        f"Stopped: {e(journal.get('stopped') or 'budget or rounds done')}.</p>",
        "<h2>Result on the test split (read once, at the end)</h2>",
        _table(
            ["config", "test accuracy (mean)", "95% interval", "by seed"],
            [
                [
                    "start",
                    _pct(start.get("mean")),
                    _level(start.get("interval95")),
                    _by_seed(start.get("by_seed")),
                ],
                [
                    "final (recipe.yaml)",
                    _pct(end.get("mean")),
                    _level(end.get("interval95")),
                    _by_seed(end.get("by_seed")),
                ],
            ],
        ),
        f"<p>Gain on test: {_pts(gain.get('diff'))} points, 95% interval {_interval(gain.get('interval95'))} "
        f"({e(str(gain.get('test')))}). Final overrides: "
        f"<code>{e(' '.join(final.get('overrides', [])) or '(none: the start)')}</code></p>",
    ]
    repro = final.get("reproduction", {})
    if repro.get("done"):
        parts.append(
            f"<p>Reproduction: recipe.yaml trained again (seed {journal['seeds'][0]}) reached "
            f"{_pct(repro.get('val_acc_again'))} validation accuracy; the loop's run {_pct(repro.get('val_acc_in_loop'))}; "
            f"seed spread (std) {_pct(repro.get('seed_spread'))}: "
            f"{'within' if repro.get('within_spread') else 'NOT within'} the seed spread.</p>"
        )
    else:
        parts.append(f"<p>Reproduction not retrained: {e(str(repro.get('why')))}.</p>")
    if repro.get("same_config") is not None:
        parts.append(
            f"<p>recipe.yaml is, key for key, the config the loop's run of seed {journal['seeds'][0]} trained with "
            "(its config.yaml; threads and logging aside).</p>"
            if repro["same_config"]
            else f"<p>recipe.yaml differs from the config the loop's run trained with at "
            f"<code>{e(str(repro.get('differs_at')))}</code>.</p>"
        )
    parts.append(
        f"<img alt='accuracy against budget' src='data:image/png;base64,{_picture(journal.get('points', []))}'>"
    )
    return parts


def _ablation_section(ablation: list[dict[str, Any]]) -> list[str]:
    """Each adopted step with its gain: the path from the start to the final recipe."""
    if not ablation:
        return ["<h2>Ablation path</h2>", "<p>Nothing adopted: the start config is returned as it was.</p>"]
    header = [
        "round",
        "adopted overrides",
        "from",
        "gain (val, points)",
        "95% interval",
        "val accuracy after",
    ]
    rows = [
        [
            a["round"],
            " ".join(a["overrides"]),
            a["source"],
            _pts(a["gain"]),
            _interval(a["interval95"]),
            _pct(a["val_acc"]),
        ]
        for a in ablation
    ]
    return ["<h2>Ablation path</h2>", _table(header, rows)]


def _second_look(journal: dict[str, Any]) -> str:
    """The seeds a second look adds, when the journal has any."""
    more = journal.get("second_look_seeds")
    return f" (a second look adds {more})" if more else ""


def _round_section(entry: dict[str, Any]) -> list[str]:
    """One round: the incumbent, the findings, lr-find, the candidates, each rung of the race, the full-length
    seeds and the decision."""
    e = html.escape
    parts = [
        f"<h2>Round {entry['round']}</h2>",
        f"<p>Incumbent: <code>{e(' '.join(entry['incumbent']) or 'the start config')}</code></p>",
        "<h3>Findings</h3>",
        _table(
            ["finding", "evidence", "suggests"],
            [[f["code"], f["evidence"], " ".join(f["overrides"])] for f in entry.get("findings", [])],
        )
        if entry.get("findings")
        else "<p>The doctor found nothing.</p>",
    ]
    if entry.get("lr_find"):
        lr = entry["lr_find"]
        parts.append(
            f"<p>lr-find ({e(str(lr['why']))}): suggestion {e(str(lr['suggestion']))}; {e(str(lr['stopped']))}</p>"
        )
    parts.append("<h3>Candidates</h3>")
    parts.append(
        _table(
            ["candidate", "from", "why"],
            [[" ".join(c["overrides"]), c["source"], c["why"]] for c in entry.get("candidates", [])],
        )
    )
    for number, rung in enumerate(entry.get("rungs", []), start=1):
        seed = entry.get("race_seed")
        which = f"seed {seed}, which no confirmation uses" if seed is not None else "one seed"
        parts.append(f"<h3>Race, rung {number}: {rung['epochs']} epoch(s), {which}</h3>")
        rows = (
            []
            if rung.get("incumbent_val_acc") is None
            else [["incumbent", _pct(rung["incumbent_val_acc"]), "reference"]]
        )
        rows += [
            [
                r["label"],
                _pct(r["val_acc"]),
                ("promoted" if r["promoted"] else "dropped")
                + (
                    " (entered here: it regularises, which shorter runs cannot judge)"
                    if r.get("entered")
                    else ""
                ),
            ]
            for r in rung["rows"]
        ]
        parts.append(_table(["config", "validation accuracy", ""], rows))
    if entry.get("race_note"):
        parts.append(f"<p>{e(str(entry['race_note']))}.</p>")
    if entry.get("full_length"):
        full = entry["full_length"]
        seeds = [
            [seed, _pct(full["incumbent"].get(seed)), _pct(full["candidate"].get(seed))]
            for seed in full["candidate"]
        ]
        parts += ["<h3>Full length</h3>", _table(["seed", "incumbent", "candidate"], seeds)]
        if entry.get("looks") == 1:
            planned = entry.get("seeds_planned")
            on = f" on {planned} seeds" if planned else ""
            parts.append(
                f"<p>One look{on}, planned before the first run: the budget could not pay for a second look's "
                "seeds, so this look uses the whole 5% error.</p>"
            )
    if entry.get("first_look"):
        parts.append(
            f"<p>First look: {e(str(entry['first_look']['reason']))}; the gain was positive, so the budget paid for "
            "two more seeds and a second look.</p>"
        )
    decision = entry.get("decision", {})
    css = "adopt" if decision.get("adopt") else "reject"
    parts.append(f"<p class='{css}'><b>Decision:</b> {e(str(decision.get('reason')))}</p>")
    return parts


def _closing_sections(journal: dict[str, Any]) -> list[str]:
    """How far the short races agreed with full length, what was not tried, and the budget ledger."""
    e = html.escape
    rank = journal.get("rank_correlation", {})
    rho = "–" if rank.get("rho") is None else f"{rank['rho']:.2f}"
    note = f"; {e(rank['note'])}" if rank.get("note") else ""
    ledger = journal.get("ledger", {})
    return [
        "<h2>Short races against full length</h2>",
        f"<p>Spearman rank correlation of short-race accuracy with full-length accuracy: {rho} over "
        f"{rank.get('n', 0)} config(s){note}. Successive halving trusts short runs; this is how far they agreed.</p>",
        "<h2>Not tried, and why</h2>",
        _table(
            ["round", "move", "why"],
            [[n.get("round", ""), n["move"], n["why"]] for n in journal.get("not_tried", [])],
        ),
        "<h2>Budget ledger</h2>",
        _table(["run", "seconds"], [[x["label"], x["seconds"]] for x in ledger.get("entries", [])]),
    ]
