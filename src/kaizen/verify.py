"""`kaizen doctor RUN --verify`: race the doctor's recommendations, above both the doctor (what to try) and the
study machinery (how to race and judge). Verify recommendations: train the run's config with each candidate override and rank them by what they did.

`verify` tries one override; `race` trains the top distinct recommendations of the top findings from the
same seed (and budget, unless one is given), over one or more seeds, and ranks them by best validation
accuracy with a 95% interval; the result is stored in RUN/doctor/verify.json and RUN/doctor/verify.png.

A race is resumable, as a compare is: RUN/doctor/trials.json maps each trial (its overrides) to its run
directory, written before the trial trains. Run again after Ctrl-C (or SIGTERM), `--verify` reuses every
finished trial, resumes a stopped one from its last checkpoint, and trains only the rest.
"""

from __future__ import annotations

import io
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kaizen.doctor import examine, top_recommendation
from kaizen.doctor.findings import Finding
from kaizen.doctor.record import RunRecord, read_run
from kaizen.errors import KaizenError
from kaizen.study import stats
from kaizen.study.verdict import BETTER, TOO_FEW_SEEDS, Verdict, phrase
from kaizen.study.verdict import judged as judge_verdict
from kaizen.track import rundir

BASELINE_LABEL = "the run as it is"


@dataclass
class Outcome:
    """The headline numbers of one run."""

    path: Path
    status: str
    epochs: int
    best_val_acc: float | None
    test_acc: float | None
    final_train_loss: float | None
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, run: RunRecord) -> Outcome:
        """The outcome of a read run, with its findings."""
        val_accs = [row["acc"] for row in run.val]
        return cls(
            path=run.path,
            status=run.status,
            epochs=len(run.train),
            best_val_acc=max(val_accs) if val_accs else None,
            test_acc=run.summary.get("test", {}).get("acc"),
            final_train_loss=run.train[-1]["loss"] if run.train else None,
            findings=examine(run),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready); findings as their codes and severities."""
        return {
            "path": str(self.path),
            "status": self.status,
            "epochs": self.epochs,
            "best_val_acc": self.best_val_acc,
            "test_acc": self.test_acc,
            "final_train_loss": self.final_train_loss,
            "findings": [{"code": f.code, "severity": f.severity} for f in self.findings],
        }


@dataclass
class Verification:
    """A recommendation tried: the overrides, the finding they address, and the run before and after."""

    overrides: list[str]
    addresses: str | None  # the code of the finding whose recommendation this is
    before: Outcome
    after: Outcome

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return {
            "overrides": self.overrides,
            "addresses": self.addresses,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


TRIALS_FILE = "trials.json"  # RUN/doctor/: {trial key: its run directory}, for resuming a race


def _train(
    record: RunRecord, overrides: list[str], name: str, quiet: bool, journal: Path | None = None
) -> RunRecord:
    """Train the run's config with `overrides` next to the run, as `<name>`; return the new run, read.

    With a `journal` (RUN/doctor/trials.json), a trial it names that is done is reused, one that stopped is
    resumed from its last checkpoint, and a new trial is entered in it before it trains.
    """
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    cfg = record.config.override(overrides)
    cfg.name = name
    cfg.log.runs_dir = str(record.path.parent)
    key = " ".join(overrides)
    trials = _read_trials(journal) if journal is not None else {}
    earlier = _earlier_trial(trials.get(key), cfg)
    if earlier is not None and earlier.status == "done":
        return earlier
    if earlier is not None:  # stopped (or killed) with a checkpoint: continue it
        fit(earlier.config, run_dir=earlier.path, resume=True, reporter=Reporter(enabled=not quiet))
        return read_run(earlier.path)
    run_dir = rundir.new_run_dir(record.path.parent, cfg.run_name())
    if journal is not None:
        rundir.write_json(journal, {**trials, key: run_dir.name})
    try:
        fit(cfg, run_dir=run_dir, reporter=Reporter(enabled=not quiet))
    except KaizenError:
        if not (run_dir / "meta.json").is_file():  # it failed before training started: leave no empty run
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return read_run(run_dir)


def _read_trials(journal: Path) -> dict[str, str]:
    """The race's trials so far, {key: run directory name}; nothing when there is no (readable) journal."""
    try:
        trials = rundir.read_json(journal)
    except KaizenError:
        return {}
    return {k: v for k, v in trials.items() if isinstance(v, str)} if isinstance(trials, dict) else {}


def _earlier_trial(name: str | None, cfg: Any) -> RunRecord | None:
    """The earlier trial `name` (beside the run) when it trained this very config and is done, or stopped with
    a checkpoint to resume from; else None (it is trained anew)."""
    if name is None or "/" in name or name in ("", ".", ".."):
        return None
    path = Path(cfg.log.runs_dir) / name
    try:
        trial = read_run(path)
    except KaizenError:
        return None
    trained, wanted = trial.config.to_dict(), cfg.to_dict()
    differs = set(rundir.changed_keys(trained, wanted)) - {"train.threads"}  # fit records the count in effect
    if differs:
        return None
    if trial.status == "done":
        return trial
    resumable = trial.status in ("stopped", "running or killed: no live process")
    return trial if resumable and (path / "checkpoints" / "last.pt").is_file() else None


def candidates(findings: list[Finding], count: int) -> list[tuple[str, str]]:
    """Up to `count` distinct (override, finding code): each warning's first recommendation, then its second..."""
    problems = [finding for finding in findings if finding.severity != "info" and finding.recommendations]
    chosen: list[tuple[str, str]] = []
    for depth in range(max((len(f.recommendations) for f in problems), default=0)):
        for finding in problems:
            if depth < len(finding.recommendations) and len(chosen) < count:
                override = finding.recommendations[depth]
                if override not in [o for o, _ in chosen]:
                    chosen.append((override, finding.code))
    return chosen


@dataclass
class Entry:
    """One raced candidate: its overrides (what the trial changed, budget included) and its runs."""

    label: str
    changes: list[str]
    addresses: str | None
    accuracies: list[float]
    paths: list[str]

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    def interval(self, n_val: int) -> tuple[float, float]:
        """95% interval of the mean best validation accuracy: over seeds (t), or binomial for one seed."""
        import math

        from scipy import stats

        values = self.accuracies
        if len(values) > 1:
            spread = statistics.stdev(values) / math.sqrt(len(values))
            half = stats.t.ppf(0.975, len(values) - 1) * spread
            return self.mean - half, self.mean + half
        n = max(n_val, 1)
        low, high = stats.binomtest(round(values[0] * n), n).proportion_ci(0.95, method="wilson")
        return float(low), float(high)

    def to_dict(self, n_val: int) -> dict[str, Any]:
        low, high = self.interval(n_val)
        return {
            "label": self.label,
            "changes": self.changes,
            "addresses": self.addresses,
            "best_val_acc": self.accuracies,
            "mean": self.mean,
            "interval95": [low, high],
            "runs": self.paths,
        }


@dataclass
class Race:
    """Candidates ranked by mean best validation accuracy (the run itself, at the same budget, among them)."""

    run: Path
    budget: int
    seeds: int
    n_val: int
    ranking: list[Entry]

    @property
    def winner(self) -> Entry:
        return self.ranking[0]

    @property
    def baseline(self) -> Entry:
        """The run as it is (at the race's budget)."""
        return next(entry for entry in self.ranking if entry.label == BASELINE_LABEL)

    def verdicts(self) -> dict[str, Verdict]:
        """Each candidate against the run as it is, by the one rule of every study verdict
        (kaizen.study.verdict): paired by seed, Holm-adjusted over the candidates, better/worse only when the
        adjusted p < 0.05 on at least MIN_SEEDS_FOR_VERDICT seeds."""
        base = self.baseline
        others = [entry for entry in self.ranking if entry is not base]
        judged = stats.judge(
            dict(enumerate(base.accuracies)),
            {entry.label: dict(enumerate(entry.accuracies)) for entry in others},
        )
        return {
            label: judge_verdict(difference, min(self.seeds, len(base.accuracies)), True)
            for label, difference in judged.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return {
            "run": str(self.run),
            "budget_epochs": self.budget,
            "seeds": self.seeds,
            "metric": "best validation accuracy",
            "winner": self.winner.label,
            "ranking": [entry.to_dict(self.n_val) for entry in self.ranking],
        }


def race(
    run_path: str | Path,
    count: int = 3,
    overrides: list[str] | None = None,
    budget: int | None = None,
    seeds: int = 1,
    quiet: bool = True,
) -> Race | None:
    """Race `count` candidate fixes (or the given `overrides`) against the run; None when nothing is to fix.

    Every trial starts from the run's config with one override, its seed (then seed + 1, ...) and its epochs,
    or `budget` epochs for every trial including the baseline (then the baseline is retrained). Writes
    RUN/doctor/verify.json and verify.png.
    """
    if count < 1:
        raise KaizenError(f"--candidates {count}: race at least one candidate")
    if seeds < 1:
        raise KaizenError(f"--seeds {seeds}: at least one seed")
    if budget is not None and budget < 1:
        raise KaizenError(f"--budget {budget}: at least one epoch")
    record = read_run(run_path)
    if record.status == "running":
        raise KaizenError(f"{record.path} is still in progress; --verify races fixes against a finished run")
    picked = [(o, None) for o in overrides] if overrides else candidates(examine(record), count)
    if not picked:
        return None
    epochs = budget or record.config.train.epochs
    extra = [] if epochs == record.config.train.epochs else [f"train.epochs={epochs}"]
    folder = _doctor_folder(record.path)
    journal = folder / TRIALS_FILE
    base_seed = record.config.train.seed
    name = record.config.run_name()
    entries = []
    for label, change, addresses in [(BASELINE_LABEL, None, None), *[(o, o, a) for o, a in picked]]:
        accuracies, paths = [], []
        for offset in range(seeds):
            seed = [] if offset == 0 else [f"train.seed={base_seed + offset}"]
            changes = [*([change] if change else []), *extra, *seed]
            if not changes:
                trial = record  # the run itself: same config, same seed, same budget
            else:
                trial = _train(record, changes, f"{name}-verify", quiet, journal)
            accuracies.append(max((row["acc"] for row in trial.val), default=0.0))
            paths.append(str(trial.path))
        entries.append(Entry(label, [*([change] if change else []), *extra], addresses, accuracies, paths))
    n_val = record.summary.get("data", {}).get("val") or 0
    result = Race(record.path, epochs, seeds, n_val, sorted(entries, key=lambda entry: -entry.mean))
    rundir.write_json(folder / "verify.json", result.to_dict())
    _plot(result, folder / "verify.png")
    return result


def _doctor_folder(run: Path) -> Path:
    """RUN/doctor/, created if needed; a symbolic link there (which would carry the files out of the run) is
    refused."""
    folder = run / "doctor"
    if folder.is_symlink():
        raise KaizenError(f"{folder} is a symbolic link; kaizen writes a run's files only inside the run")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise KaizenError(f"cannot write {folder}: {error.strerror or error}") from None
    return folder


def _plot(result: Race, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [entry.label for entry in result.ranking][::-1]
    means = [100 * entry.mean for entry in result.ranking][::-1]
    intervals = [entry.interval(result.n_val) for entry in result.ranking][::-1]
    errors = [
        [m - 100 * low for m, (low, _) in zip(means, intervals)],
        [100 * high - m for m, (_, high) in zip(means, intervals)],
    ]
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.2))
    axes.barh(
        labels, means, xerr=errors, color=["C2" if i == len(labels) - 1 else "C0" for i in range(len(labels))]
    )
    axes.set_xlabel("best validation accuracy (%), 95% interval")
    axes.set_title(f"doctor --verify: {result.budget} epochs, {result.seeds} seed(s)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    rundir.atomic_write_bytes(path, buffer.getvalue())  # replaces a link planted at `path`, never follows it


def verify(run_path: str | Path, overrides: list[str] | None = None, quiet: bool = True) -> Verification:
    """Train the run's config with `overrides` (default: the top recommendation) and compare with the run.

    Same config otherwise, hence the same seed, data split and budget (epochs). The new run is written next
    to the original, named `<name>-verify`. Raises KaizenError if the run is still in progress, or if no
    finding recommends anything and no overrides were given.
    """
    record = read_run(run_path)
    if record.status == "running":
        raise KaizenError(f"{record.path} is still in progress; --verify compares with a finished run")
    before = Outcome.of(record)
    addresses = None
    if not overrides:
        top = top_recommendation(before.findings)
        if top is None:
            raise KaizenError(
                f"{record.path}: no warning or critical finding recommends a change; nothing to verify"
            )
        addresses, overrides = top[0].code, [top[1]]
    after = _train(record, list(overrides), f"{record.config.run_name()}-verify", quiet)
    return Verification(list(overrides), addresses, before, Outcome.of(after))


# ------------------------------------------------------------------------------------ the race in words


def render_race(result: Race) -> Group:
    """The raced candidates ranked, each with what it changed, its accuracy and 95% interval; the winner first."""
    table = Table(
        title=f"verify: {result.budget} epochs per trial, {result.seeds} seed(s); best validation accuracy",
        title_justify="left",
    )
    for column in ("#", "candidate", "changes", "val acc", "95% interval", "addresses"):
        table.add_column(column, justify="right" if column in ("#", "val acc") else "left")
    for rank, entry in enumerate(result.ranking, 1):
        low, high = entry.interval(result.n_val)
        table.add_row(
            str(rank),
            entry.label,
            " ".join(f"--set {change}" for change in entry.changes) or "(none)",
            f"{entry.mean:.1%}",
            f"{low:.1%} to {high:.1%}",
            entry.addresses or "",
        )
    advice = Text(race_advice(result), style="bold green" if _beaten(result) else "bold yellow")
    return Group(
        table, advice, Text(f"stored: {result.run / 'doctor' / 'verify.json'} and verify.png", style="dim")
    )


def _beaten(result: Race) -> bool:
    return any(verdict.label == "better" for verdict in result.verdicts().values())


def race_advice(result: Race) -> str:
    """The race's advice in words, by the one verdict rule of kaizen.study.verdict: a candidate is advised
    only when it is significantly better than the run as it is; otherwise the measured leader is named with
    what would tell (more seeds) or that nothing beat the run."""
    verdicts, baseline, winner = result.verdicts(), result.baseline, result.winner
    better = [
        entry for entry in result.ranking if entry.label in verdicts and verdicts[entry.label].label == BETTER
    ]
    if better:
        best = better[0]
        return f"advice: --set {best.label}  (better than the run as it is: {phrase(verdicts[best.label], True)})"
    measured = f"{winner.mean:.1%} vs the run's {baseline.mean:.1%}"
    if winner is baseline:
        return "advice: no candidate beat the run as it is at this budget"
    if verdicts[winner.label].label == TOO_FEW_SEEDS:
        return (
            f"no verdict: --set {winner.label} measured highest ({measured}) on {result.seeds} seed(s), too few "
            "to tell from seed noise; --seeds 3 or more gives a verdict"
        )
    return (
        f"no candidate is clearly better than the run as it is: --set {winner.label} measured highest "
        f"({measured}; {phrase(verdicts[winner.label], True)})"
    )
