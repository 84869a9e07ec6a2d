"""The results table for the terminal (rich)."""

from __future__ import annotations

import math

from rich import box
from rich.table import Table

from kaizen.study import stats
from kaizen.study import verdict as rule
from kaizen.study.report.text import fmt_number, fmt_p, is_accuracy, shown_interval, verdict
from kaizen.study.results import Results


def render_table(results: Results, width: int = 120) -> Table:
    """The results as a compact rich table for the terminal (accuracies in %; errors are listed by the caller).

    Below 100 columns the effect size and the time per run are left out, to keep the variant names readable.
    """
    metric = results.metric
    scale, digits = (100, 2) if is_accuracy(metric) else (1, 4)

    def number(value: float, sign: str = "") -> str:
        return f"{value * scale:{sign}.{digits}f}" if math.isfinite(value) else "—"

    unit = " (%)" if is_accuracy(metric) else ""
    table = Table(
        title=f"{results.study.get('title', 'study')} · {metric}{unit}",
        title_justify="left",
        caption=f"Δ: vs the baseline (base) · p adj: {results.correction} ({results.comparisons} comparisons) · "
        f"n.s.: not significant (p adj ≥ {stats.SIGNIFICANCE}) · small test: consistent over seeds, but the "
        f"test set cannot resolve it · few seeds: < {stats.MIN_SEEDS_FOR_VERDICT} seeds, estimates only · P>: P(beats baseline) over seed pairs · g: Hedges' g · s/run: train seconds",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    wide = width >= 100
    longest = max((len(v.id) for v in results.variants), default=8) + 2
    table.add_column("#", justify="right")
    table.add_column("variant", min_width=min(longest, 30 if wide else 18), overflow="fold")
    headers = ["n", "mean ± std", "95% CI", "Δ", "p adj"] + (["P>", "g"] if wide else []) + ["verdict"]
    for header in headers + (["s/run"] if wide else []):
        table.add_column(header, justify="left" if header == "verdict" else "right", no_wrap=True)
    for variant in results.ranked():
        spread, difference = variant.spread, variant.difference
        low, high = shown_interval(metric, spread) if spread.n > 1 else (math.nan, math.nan)
        mean = number(spread.mean) + (f" ± {number(spread.std)}" if math.isfinite(spread.std) else "")
        state = verdict(results, variant)
        cells = [
            str(variant.rank or "—"),
            variant.id,
            f"{len(variant.done)}/{len(variant.runs)}",
            mean if spread.n else "—",
            f"{number(low)}–{number(high)}" if math.isfinite(low) else "—",
            number(difference.diff, "+") if difference else "—",
            fmt_p(difference.p_adj) if difference else "—",
        ]
        if wide:
            cells += (
                [fmt_number(difference.p_beats), fmt_number(difference.hedges_g)] if difference else ["—"] * 2
            )
        cells += [rule.SHORT.get(state, state)] + ([fmt_number(variant.train_seconds, 1)] if wide else [])
        table.add_row(*cells, style=rule.COLOURS.get(state))
    return table
