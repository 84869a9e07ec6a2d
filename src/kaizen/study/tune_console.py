"""What `kaizen tune` prints: the start line, one line per trial, and the end of a search (trials per state,
the best trials as a table, importance, the next command)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kaizen.study.tune import BEST_FILE, TrialEvent, TuneResult, describe


def count(number: int, noun: str) -> str:
    """`1 trial`, `3 trials`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def start_line(result: TuneResult, trials: int, counted: int, to_run: int) -> str:
    """The line before the first trial: the search, how much of it is done, the metric and the storage."""
    held = f", {counted} in the study already" if counted else ""
    return (
        f"tune '{result.study.study_name}': {count(trials, 'trial')}{held}, {to_run} to run · "
        f"{result.metric} ({result.study.direction.name.lower()}) · storage {result.storage}"
    )


def trial_line(event: TrialEvent) -> tuple[str, str | None]:
    """One trial's progress line and its style (None, yellow when pruned, red when it failed)."""
    value = "" if event.value is None else f" · {event.value:.4f}"
    best = "" if event.best_number is None else f" (best {event.best_value:.4f}, trial {event.best_number})"
    line = (
        f"[{event.counted}/{event.total}] trial {event.number} · {event.shown} · "
        f"{event.state}{value}{best if event.state == 'complete' else ''} · {event.epochs} "
        f"epoch{'s' if event.epochs != 1 else ''} in {event.seconds:.1f}s"
    )
    if event.message:
        line += f": {event.message}"
    return line, {"complete": None, "pruned": "yellow"}.get(event.state, "red")


def print_result(result: TuneResult, out: Console, err: Console) -> bool:
    """Print the end of a search; False when no trial completed (a search that found nothing)."""
    counts = ", ".join(f"{number} {state}" for state, number in result.counts().items())
    err.print(
        f"ran {count(result.ran, 'trial')} in {result.seconds:.1f}s here · the study has "
        f"{len(result.trials)}: {counts}",
        highlight=False,
    )
    ranked = sorted(
        (trial for trial in result.trials if trial.value is not None and trial.state.name == "COMPLETE"),
        key=lambda trial: trial.value,
        reverse=result.study.direction.name == "MAXIMIZE",
    )
    if not ranked:
        err.print(
            f"[red]no trial completed[/]: see {result.out_dir / 'trials.csv'} for the errors",
            highlight=False,
            soft_wrap=True,
        )
        return False
    table = Table(title=f"best trials of {len(result.trials)} · {result.metric}", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column(result.metric, justify="right")
    for param in result.space:
        table.add_column(param.key, justify="right")
    for trial in ranked[:5]:
        table.add_row(
            str(trial.number),
            f"{trial.value:.4f}",
            *[
                param.show(trial.params[param.key]) if param.key in trial.params else ""
                for param in result.space
            ],
        )
    out.print(table)
    if result.importance is not None:
        shares = ", ".join(f"{key} {share:.2f}" for key, share in result.importance.items())
        out.print(
            f"importance: {shares} -> {result.out_dir / 'importance.png'}", highlight=False, soft_wrap=True
        )
    else:
        out.print(result.importance_note, highlight=False, soft_wrap=True)
    best = ranked[0]
    out.print(
        f"[bold]best: trial {best.number}, {result.metric} {best.value:.4f}[/] · {describe(best, result.space)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"train it: kaizen train -c {result.out_dir / BEST_FILE}    (trials: {result.out_dir / 'trials.csv'})",
        highlight=False,
        soft_wrap=True,
    )
    return True
