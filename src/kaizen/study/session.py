"""One study session: tune each variant's nuisance parameter, run the seeds (in rounds with `--seeds auto`),
write the report.

Fair comparison of techniques that need their own learning rate (the Google tuning playbook's point): with
`--tune optim.lr=log(1e-4,1) --trials N` every variant gets its own search of N trials on the validation split
(`kaizen tune`'s machinery, in `DIR/tune/<variant>/`, resumable), and its seeds then run at its best value;
study.json records the chosen values. One seed's validation score can favour a value at the edge of stability
(the optimisers study on digits chose SGD at lr 0.78 from one seed, and two of its five seeds then collapsed
to 65% and 74%), so the CONFIRM_TRIALS best trials are each trained again on CONFIRM_SEEDS more seeds, a
finalist with a collapsed seed is rejected, and the best mean − std of the rest wins (tune.choose_stable). The test set is never looked at while tuning.

`--seeds auto[:MAX]` starts with MIN_SEEDS_FOR_VERDICT seeds and adds AUTO_STEP seeds to every variant per
round until each variant's interval of the difference excludes 0 (it is separated from the baseline) or MAX
seeds ran. Stopping when the intervals separate is optional stopping: the false-alarm rate of the final
verdicts is somewhat above the nominal 5%, which the report says.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.study import stats
from kaizen.study.compare import Event, Outcome, Plan, StudyLock, Variant, run_plan
from kaizen.study.report import Report, write_report
from kaizen.study.results import Results, collect

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from kaizen.study.tune import TuneResult

AUTO_DEFAULT_MAX = 10  # --seeds auto without :MAX
AUTO_STEP = 2  # seeds added per round
TUNE_DIR = "tune"
CONFIRM_TRIALS, CONFIRM_SEEDS = 3, 2  # the search's best trials, re-run on this many more seeds
CONFIRM_DIR = "confirm"


@dataclass(frozen=True)
class Seeds:
    """--seeds: a fixed count, or auto (start at `count`, add AUTO_STEP per round up to `most`)."""

    count: int
    most: int | None = None

    @property
    def auto(self) -> bool:
        return self.most is not None


def parse_seeds(text: str | int) -> Seeds:
    """Parse --seeds: N (at least 1), auto or auto:MAX (MAX at least MIN_SEEDS_FOR_VERDICT)."""
    text = str(text).strip()
    if text == "auto" or text.startswith("auto:"):
        most_text = text.partition(":")[2] or str(AUTO_DEFAULT_MAX)
        if not most_text.isdigit() or int(most_text) < stats.MIN_SEEDS_FOR_VERDICT:
            raise KaizenError(
                f"--seeds {text}: MAX must be a whole number of at least {stats.MIN_SEEDS_FOR_VERDICT}"
            )
        return Seeds(stats.MIN_SEEDS_FOR_VERDICT, int(most_text))
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise KaizenError(f"--seeds must be at least 1 (a whole number, or auto[:MAX]), not '{text}'")
    return Seeds(int(text))


def check_verdict_request(seeds: Seeds, split_seeds: int, correction: str | None) -> None:
    """An explicit --correction (a request for significance verdicts) with too few runs per variant is bad
    input: no verdict is possible there, only estimates."""
    runs = seeds.count * max(1, split_seeds)
    if correction not in (None, "none") and not seeds.auto and runs < stats.MIN_SEEDS_FOR_VERDICT:
        raise KaizenError(
            f"--correction {correction} asks for significance verdicts, but --seeds {seeds.count} gives "
            f"{runs} run(s) per variant: a verdict needs at least {stats.MIN_SEEDS_FOR_VERDICT}; raise --seeds or "
            "drop --correction to get estimates only"
        )


@dataclass(frozen=True)
class TuneSpec:
    """--tune KEY=SPACE (repeatable) with --trials N per variant."""

    space: tuple[str, ...]
    trials: int

    @property
    def keys(self) -> list[str]:
        return [text.partition("=")[0].strip() for text in self.space]


def check_tune(plan: Plan, spec: TuneSpec, compared: list[str]) -> None:
    """KaizenError when a tuned key is also compared (--vary) or the trials are not positive; the space
    itself is checked by the tuner before its first trial."""
    if not isinstance(spec.trials, int) or spec.trials < 1:
        raise KaizenError(f"--trials must be at least 1, not {spec.trials}")
    for key in spec.keys:
        if key in compared:
            raise KaizenError(
                f"--tune {key}: the same key is compared with --vary; tune a nuisance parameter "
                "(e.g. optim.lr), not the technique under comparison"
            )
        if key == "train.seed" or key.startswith("data."):
            raise KaizenError(
                f"--tune {key}: not a nuisance parameter of the training (seeds and data are fixed)"
            )


def tune_variants(
    plan: Plan, out_dir: Path, spec: TuneSpec, on_variant: Callable[[str, str], None] | None = None
) -> Plan:
    """Search `spec` for each variant on its validation split and return the plan with each variant's best
    values appended to its overrides (and recorded under study.json's "tuned")."""
    from kaizen.study.tune import describe, trial_overrides
    from kaizen.study.tune import tune as search

    chosen, variants, searches = {}, [], {}
    threads = plan.base.train.threads or 1  # as run_plan lays the runs out
    with StudyLock(out_dir if out_dir.is_dir() else _made(out_dir)):
        for variant in plan.variants:
            split = plan.split_seeds[0] if plan.split_seeds else None
            # with the thread count the study's runs train with, so a trial is the same run as that seed's
            base = plan.config(variant, plan.seeds[0], split).override([f"train.threads={threads}"])
            result = search(
                base, list(spec.space), spec.trials, out_dir / TUNE_DIR / variant.id, metric="val_acc"
            )
            if result.best is None:
                raise KaizenError(
                    f"--tune: no trial of {variant.id} completed; see {result.out_dir / 'trials.csv'}"
                )
            best, score, record = _confirmed(result, base)
            searches[variant.id] = record
            overrides = trial_overrides(best, result.space)
            chosen[variant.id] = {
                param.key: param.show(best.params[param.key])
                for param in result.space
                if param.key in best.params
            }
            if on_variant is not None:
                on_variant(variant.id, f"{describe(best, result.space)} ({score})")
            variants.append(Variant(variant.id, (*variant.overrides, *overrides)))
    extra = {
        **plan.extra,
        "tuned": {
            "space": list(spec.space),
            "trials": spec.trials,
            "chosen": chosen,
            "confirmed": {"trials": CONFIRM_TRIALS, "more_seeds": CONFIRM_SEEDS, "rule": "stable"},
            "searches": searches,
        },
    }
    return replace(plan, variants=variants, extra=extra)


def _confirmed(result: TuneResult, base: Config) -> tuple[FrozenTrial, str, dict]:
    """Train the search's CONFIRM_TRIALS best complete trials on CONFIRM_SEEDS more seeds (runs under
    `<search>/confirm/`, reused when run again) and choose among them by tune.choose_stable: no collapsed
    seed, then the best mean − std. Returns the chosen trial, a line saying what the tuning did (trials run,
    pruned, failed, confirmed, chosen and why) and the same as plain data for study.json."""
    from optuna.trial import TrialState

    from kaizen.study.tune import METRICS, Confirmed, choose_stable, describe, trial_overrides

    maximize = METRICS[result.metric] == "maximize"
    complete = result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda trial: (-trial.value if maximize else trial.value, trial.number))
    finalists = ranked[:CONFIRM_TRIALS]
    seeds = [base.train.seed + offset for offset in range(1, CONFIRM_SEEDS + 1)]
    candidates = []
    for trial in finalists:
        values = [trial.value]
        for seed in seeds:
            cfg = base.override([*trial_overrides(trial, result.space), f"train.seed={seed}"])
            folder = result.out_dir / CONFIRM_DIR / f"trial-{trial.number:04d}-seed{seed}"
            values.append(_ended_with(cfg, folder, result.metric))
        candidates.append(Confirmed(trial, (base.train.seed, *seeds), tuple(values), maximize))
    best, why = choose_stable(candidates)
    counts = result.counts()
    ran = ", ".join(f"{number} {state}" for state, number in counts.items())
    shown = "; ".join(
        f"{describe(c.trial, result.space)} {c.mean:.4f} ± {c.std:.4f}"
        + (f" (collapsed on seed {', '.join(map(str, c.collapsed))})" if c.collapsed else "")
        for c in candidates
    )
    line = (
        f"{result.metric} {best.mean:.4f} ± {best.std:.4f} over seeds {', '.join(map(str, best.seeds))}. "
        f"{sum(counts.values())} trials: {ran}; the best {len(finalists)} complete re-run on seeds "
        f"{', '.join(map(str, seeds))}: {shown}; chosen: {why}"
    )
    record = {
        "trials": counts,
        "confirmed": [
            {
                "trial": c.trial.number,
                "params": {key: value for key, value in c.trial.params.items()},
                "seeds": list(c.seeds),
                "values": [value if math.isfinite(value) else None for value in c.values],
                "mean": c.mean,
                "std": c.std,
                "collapsed": c.collapsed,
            }
            for c in candidates
        ],
        "chosen": best.trial.number,
        "why": why,
    }
    return best.trial, line, record


def _ended_with(cfg: Config, folder: Path, metric: str) -> float:
    """Train `cfg` in `folder` (or read it, when an earlier session finished it); return the metric of the
    model it ended with, NaN when the run failed."""
    import shutil

    from kaizen.study.tune import ended_metric
    from kaizen.track import rundir
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted confirming run starts again
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        try:
            fit(cfg, run_dir=folder, reporter=Reporter(enabled=False))
        except KaizenError:
            return math.nan
    return ended_metric(rundir.read_json(summary_path), metric)


def _made(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None
    return out_dir


def separated(results: Results) -> bool:
    """Whether every variant's interval of the difference from the baseline excludes 0 (the interval at the
    level matching its adjusted p: exactly when the verdict rule finds the difference significant)."""
    for variant in results.variants:
        difference = variant.difference
        if difference is None:
            continue
        if not (math.isfinite(difference.ci_low) and (difference.ci_low > 0 or difference.ci_high < 0)):
            return False
    return True


def execute(
    plan: Plan,
    out_dir: Path | str,
    workers: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    backend: str = "local",
    address: str | None = None,
    correction: str | None = None,
    interval: str | None = None,
    most_seeds: int | None = None,
    on_round: Callable[[int, str], None] | None = None,
) -> tuple[Outcome, Report]:
    """Run a plan (resuming what is finished) on `backend` (local or ray) and write its report; return both.

    With `most_seeds`, seeds are added AUTO_STEP at a time until every variant separates from the baseline
    or `most_seeds` ran (`on_round(seeds, why)` says why each round ends).
    """
    out_dir = Path(out_dir)
    plan.extra = {
        **plan.extra,
        "correction": correction or plan.extra.get("correction", "holm"),
        "interval": interval or plan.extra.get("interval", "t"),
    }
    if most_seeds is not None:
        plan.extra["seeds_auto_max"] = most_seeds
    total = Outcome()
    first = True
    while True:
        outcome = run_plan(plan, out_dir, workers, on_event, on_start, backend, address)
        _add(total, outcome, first)
        first = False
        if most_seeds is None:
            break
        results = collect(out_dir)
        if separated(results):
            why = "every variant separates from the baseline"
        elif len(plan.seeds) >= most_seeds:
            why = f"reached the maximum of {most_seeds} seeds"
        else:
            why = ""
        if on_round is not None:
            on_round(len(plan.seeds), why or f"not yet separated: adding {AUTO_STEP} seeds")
        if why:
            break
        more = min(AUTO_STEP, most_seeds - len(plan.seeds))
        plan.seeds = plan.seeds + [plan.seeds[-1] + k for k in range(1, more + 1)]
    return total, write_report(out_dir)


def run_study(
    plan: Plan,
    out_dir: str | Path,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    correction: str | None = None,
    interval: str | None = None,
    most_seeds: int | None = None,
    tune: TuneSpec | None = None,
    say: Callable[..., None] | None = None,
) -> tuple[Outcome, Report]:
    """Check and run a study plan as `kaizen compare|study|datacurve` do: tune each variant first (`tune`), then
    every run, resumable, and write the report. `say(line, alert=False)` receives one line per run and per step
    (alert: a run that did not finish). Returns (outcome, report)."""
    from kaizen.study import throughput
    from kaizen.study.compare import check_workers
    from kaizen.study.launch import check_backend
    from kaizen.study.results import check_choices

    say = say or (lambda line, alert=False: None)
    out_dir = Path(out_dir)
    check_workers(workers)
    check_backend(backend, address)
    check_choices(plan.metric, correction or "holm", interval or "t")

    def progress(event: Event) -> None:
        if event.status == "skipped":
            return
        run = f"seed {event.seed}" if event.split is None else f"split {event.split} · seed {event.seed}"
        line = f"[{event.index}/{event.total}] {event.variant} · {run} · {event.status} in {event.seconds:.1f}s"
        say(line + (f": {event.error}" if event.error else ""), event.status != "done")

    def start(to_run: int, finished: int) -> None:
        runs = f"{len(plan.variants)} variants × {len(plan.seeds)} seeds"
        runs += f" × {len(plan.split_seeds)} splits" if plan.split_seeds else ""
        earlier = f", {finished} finished earlier" if finished else ""
        say(f"{plan.title}: {runs}, {to_run} to run{earlier} -> {out_dir}")

    try:
        if tune is not None:
            say(f"tuning {', '.join(tune.keys)} per variant: {tune.trials} trials each on the validation split")
            plan = tune_variants(plan, out_dir, tune, on_variant=lambda variant, best: say(f"tuned {variant}: {best}"))
        outcome, report = execute(
            plan,
            out_dir,
            workers,
            on_event=progress,
            on_start=start,
            backend=backend,
            address=address,
            correction=correction,
            interval=interval,
            most_seeds=most_seeds,
            on_round=lambda seeds, why: say(f"seeds auto: {seeds} seeds, {why}"),
        )
    except KeyboardInterrupt:
        say("interrupted: finished runs are kept; run the same command again to resume")
        raise
    where = f" on {outcome.where}" if outcome.where else ""
    say(
        f"ran {outcome.ran}, skipped {outcome.skipped} finished earlier, {len(outcome.failed)} failed · "
        f"{outcome.seconds:.1f}s{where}"
    )
    if outcome.throughput is not None:
        say(f"throughput: {throughput.describe(outcome.throughput)}")
    return outcome, report


def _add(total: Outcome, outcome: Outcome, first: bool) -> None:
    """Accumulate one round's outcome into the session's (runs skipped count in the first round only: later
    rounds skip what earlier ones ran)."""
    total.ran += outcome.ran
    total.skipped += outcome.skipped if first else 0
    total.failed += outcome.failed
    total.seconds += outcome.seconds
    total.run_seconds += outcome.run_seconds
    total.workers, total.threads, total.backend = outcome.workers, outcome.threads, outcome.backend
    total.where = outcome.where or total.where
    total.throughput = outcome.throughput or total.throughput
