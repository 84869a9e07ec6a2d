"""The results of a study, read back from its directory: study.json and the run directories, nothing else.

`collect(study_dir)` returns each variant's runs, the chosen metric per seed, its spread and 95% interval,
its difference from the baseline with a p-value (raw and adjusted for the number of comparisons), verdict and
effect size, the paired comparison over test examples where the runs kept them, its rank and its train time
per run. The metric, the correction and the interval can be chosen again at any time (`kaizen report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaizen.config import Config, dotted
from kaizen.errors import KaizenError
from kaizen.registry import did_you_mean
from kaizen.study import stats
from kaizen.study.compare import ERROR_FILE, METRICS, STUDY_FILE, StudyLock, comparable, run_path
from kaizen.study.examples import read_test_correct
from kaizen.study.verdict import Verdict, judged
from kaizen.track import rundir

Key = tuple[int | None, int]  # (split seed or None when the split is shared, seed)


@dataclass
class RunRecord:
    """One (variant, seed) run as its directory tells it."""

    seed: int
    path: Path
    status: str  # done | failed | stopped | running | not run | missing (its folder was deleted)
    split: int | None = None
    error: str | None = None
    value: float = math.nan
    train_seconds: float = math.nan
    gap: float = math.nan  # final train accuracy - final validation accuracy
    train_examples: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    correct: np.ndarray | None = None  # per test image: right or wrong (test_correct.npy)
    test_size: int | None = None

    @property
    def key(self) -> Key:
        """(split seed, seed): what pairs this run with the baseline's."""
        return self.split, self.seed

    @property
    def name(self) -> str:
        """seed<k>, or split<s>-seed<k>: the run's folder name."""
        return self.path.name


@dataclass
class VariantResult:
    """One variant: its runs, the metric's spread over seeds, and the comparison with the baseline."""

    id: str
    overrides: list[str]
    runs: list[RunRecord]
    spread: stats.Spread
    difference: stats.Difference | None = None  # None for the baseline itself
    rank: int | None = None
    config_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    # the paired bootstrap over test examples and seeds: (diff, low, high, p), None without test_correct files
    examples: tuple[float, float, float, float] | None = None
    components: tuple[float, float] | None = None  # (split std, init std) when split seeds vary
    seeds_needed: int | None = None  # seeds for 80% power at the observed difference (None: none found)
    verdict: Verdict | None = None  # the one decision (kaizen.study.verdict), None for the baseline

    @property
    def done(self) -> list[RunRecord]:
        """The runs that finished."""
        return [run for run in self.runs if run.status == "done"]

    @property
    def values(self) -> dict[Key, float]:
        """The metric of each finished run, by (split seed, seed)."""
        return {run.key: run.value for run in self.done if math.isfinite(run.value)}

    @property
    def correct(self) -> dict[Key, np.ndarray]:
        """Per-example test correctness of the finished runs that kept it, by (split seed, seed)."""
        return {run.key: run.correct for run in self.done if run.correct is not None}

    @property
    def status(self) -> str:
        """done (every seed), partial, failed (no seed finished, some failed) or incomplete."""
        finished = len(self.done)
        if finished == len(self.runs):
            return "done"
        if any(run.status == "missing" for run in self.runs):
            return "missing"
        if finished:
            return "partial"
        if any(run.status in ("failed", "stopped") for run in self.runs):
            return "failed"
        return "incomplete"

    @property
    def errors(self) -> list[str]:
        """Distinct error messages of the runs that did not finish."""
        messages = []
        for run in self.runs:
            if run.error and run.status != "done" and run.error not in messages:
                messages.append(run.error)
        return messages

    @property
    def train_seconds(self) -> float:
        """Mean train time of a finished run."""
        times = [run.train_seconds for run in self.done if math.isfinite(run.train_seconds)]
        return sum(times) / len(times) if times else math.nan

    @property
    def gap(self) -> float:
        """Mean final train - validation accuracy of the finished runs."""
        gaps = [run.gap for run in self.done if math.isfinite(run.gap)]
        return sum(gaps) / len(gaps) if gaps else math.nan


@dataclass
class Results:
    """A whole study: its plan (study.json), every variant's results in plan order, and how they were judged:
    the metric, the multiple-comparison correction, the interval, whether a compare still holds the folder."""

    path: Path
    study: dict[str, Any]
    variants: list[VariantResult]
    metric: str = "test.acc"
    correction: str = "holm"
    interval: str = "t"
    in_progress: bool = False

    @property
    def higher_is_better(self) -> bool:
        """Accuracies are better high; losses and the train/validation gap low."""
        return higher_is_better(self.metric)

    @property
    def comparisons(self) -> int:
        """How many variants were tested against the baseline (what the correction adjusts for)."""
        return sum(
            1 for v in self.variants if v.difference is not None and math.isfinite(v.difference.p_value)
        )

    @property
    def seeds_per_variant(self) -> int:
        """Runs per variant in the plan (seeds × split seeds)."""
        return len(self.study["seeds"]) * max(1, len(self.study.get("split_seeds", [])))

    @property
    def verdicts_possible(self) -> bool:
        """Whether the plan has enough seeds for a verdict (else the report gives estimates only)."""
        return self.seeds_per_variant >= stats.MIN_SEEDS_FOR_VERDICT

    @property
    def missing(self) -> list[RunRecord]:
        """Runs whose folders were deleted although the study had run them."""
        return [run for v in self.variants for run in v.runs if run.status == "missing"]

    @property
    def test_size(self) -> int | None:
        """Test images per run (the largest any finished run reports)."""
        sizes = [run.test_size for v in self.variants for run in v.done if run.test_size]
        return max(sizes) if sizes else None

    @property
    def baseline(self) -> VariantResult:
        """The variant the others are tested against."""
        return next(v for v in self.variants if v.id == self.study["baseline"])

    def ranked(self) -> list[VariantResult]:
        """Variants best first; those without a finished run last, in plan order."""
        return sorted(self.variants, key=lambda v: (v.rank is None, v.rank or 0))


def load_study(study_dir: Path | str) -> dict[str, Any]:
    """Read study.json; KaizenError when the folder is not a study."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise KaizenError(f"{study_dir} is not a study directory (no {STUDY_FILE})")
    study = rundir.read_json(path)
    fields = {"metric": str, "seeds": list, "variants": list, "baseline": str, "base_config": dict}
    rundir.check_fields(study, path, {**fields, "split_seeds": (list, type(None))}, required=tuple(fields))
    for entry in study["variants"]:
        if not isinstance(entry, dict):
            raise KaizenError(f"{path}: each of 'variants' should be an object, not {entry!r:.40}")
        rundir.check_fields(entry, path, {"id": str, "overrides": list}, required=("id", "overrides"))
    if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in study["seeds"]):
        raise KaizenError(f"{path}: 'seeds' should be a list of integers, not {study['seeds']!r:.40}")
    if study["baseline"] not in [entry["id"] for entry in study["variants"]]:
        raise KaizenError(f"{path}: baseline '{study['baseline']}' is not one of its variants: it is damaged")
    return study


def higher_is_better(metric: str) -> bool:
    """Accuracies are better high; losses and the train/validation gap low."""
    return not (metric.endswith("loss") or metric == "gap")


def check_choices(metric: str, correction: str, interval: str) -> None:
    """KaizenError naming the first of metric, correction and interval that is unknown."""
    for option, value, valid in (
        ("--metric", metric, METRICS),
        ("--correction", correction, stats.CORRECTIONS),
        ("--interval", interval, stats.INTERVALS),
    ):
        if value not in valid:
            raise KaizenError(
                f"{option}: unknown value '{value}'{did_you_mean(value, list(valid))}; valid: {', '.join(valid)}"
            )


def collect(
    study_dir: Path | str,
    metric: str | None = None,
    correction: str | None = None,
    interval: str | None = None,
) -> Results:
    """Read a study directory and compute every variant's statistics on `metric` with `correction` and
    `interval` (each default: what the study was run with, else test.acc, holm, t)."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    metric = metric or study["metric"]
    correction = correction or study.get("correction", "holm")
    interval = interval or study.get("interval", "t")
    check_choices(metric, correction, interval)
    splits = study.get("split_seeds") or [None]
    started = study_dir / "runs"
    variants = [
        VariantResult(
            id=entry["id"],
            overrides=entry["overrides"],
            runs=[
                read_run(run_path(study_dir, entry["id"], seed, split), seed, metric, split, started.is_dir())
                for split in splits
                for seed in study["seeds"]
            ],
            spread=stats.describe([]),
        )
        for entry in study["variants"]
    ]
    judge_variants(study, variants, metric, correction, interval)
    for variant in variants:
        variant.config_diff = _config_diff(
            study, next(v for v in variants if v.id == study["baseline"]), variant
        )
    return Results(
        path=study_dir,
        study=study,
        variants=variants,
        metric=metric,
        correction=correction,
        interval=interval,
        in_progress=StudyLock(study_dir).held(),
    )


def judge_variants(
    study: dict[str, Any], variants: list[VariantResult], metric: str, correction: str, interval: str
) -> None:
    """Fill in every variant's spread, its comparison with the baseline (study["baseline"]), its Verdict by
    the one rule of kaizen.study.verdict, and its rank, from the runs it holds."""
    bounds = (0.0, 1.0) if metric.endswith("acc") else None
    for variant in variants:
        variant.spread = stats.describe(list(variant.values.values()), interval, bounds)
        if study.get("split_seeds"):
            variant.components = stats.variance_components(variant.values)
    baseline = next(v for v in variants if v.id == study["baseline"])
    better_high = higher_is_better(metric)
    others = [v for v in variants if v is not baseline]
    differences = stats.judge(
        baseline.values, {v.id: v.values for v in others}, better_high, correction, interval
    )
    test_sizes = [run.test_size for v in variants for run in v.done if run.test_size]
    test_size = max(test_sizes) if test_sizes and metric == "test.acc" else None
    for variant in others:
        difference = variant.difference = differences[variant.id]
        variant.examples = _paired_examples(metric, baseline, variant, difference.confidence)
        variant.seeds_needed = _seeds_needed(baseline, variant)
        variant.verdict = judged(
            difference,
            min(len(baseline.values), len(variant.values)),
            better_high,
            variant.examples,
            test_size,
            baseline.spread.mean,
        )
    sign = 1 if better_high else -1
    scored = sorted((v for v in variants if v.values), key=lambda v: -sign * v.spread.mean)
    for rank, variant in enumerate(scored, start=1):
        variant.rank = rank


def _paired_examples(
    metric: str, baseline: VariantResult, variant: VariantResult, confidence: float
) -> tuple[float, float, float, float] | None:
    """The paired bootstrap over test examples and seeds, for test accuracy where both kept their examples,
    its interval at `confidence` (the level of the seeds' interval, so both are read at one level)."""
    if metric != "test.acc":
        return None
    mine, theirs = variant.correct, baseline.correct
    if not any(key in theirs for key in mine):
        return None
    return stats.paired_examples(theirs, mine, confidence=confidence)


def _seeds_needed(baseline: VariantResult, variant: VariantResult) -> int | None:
    """Seeds for 80% power of a paired t-test at the observed difference and spread of paired differences."""
    shared = [key for key in variant.values if key in baseline.values]
    if len(shared) < 2:
        return None
    differences = [variant.values[key] - baseline.values[key] for key in shared]
    return stats.seeds_for_power(float(np.mean(differences)), float(np.std(differences, ddof=1)))


def read_run(
    path: Path, seed: int, metric: str, split: int | None = None, started: bool = False
) -> RunRecord:
    """Read one run directory (or the error.json of a run that failed before it had one). A run without a
    folder is "not run", or "missing" once the study has `started` (a compare creates the folders of all the
    runs it will make before the first starts, so an absent one was deleted)."""
    record = RunRecord(seed=seed, path=path, status="not run", split=split)
    if started and not path.exists():
        record.status = "missing"
        return record
    if (path / "meta.json").is_file():
        try:
            meta = rundir.read_json(path / "meta.json")
        except KaizenError as error:
            record.status, record.error = "failed", str(error)
            return record
        record.status, record.error = meta.get("status", "unknown"), meta.get("error")
    elif (path / ERROR_FILE).is_file():
        try:
            error = rundir.read_json(path / ERROR_FILE)
            record.status, record.error = error.get("status", "failed"), error.get("error")
        except KaizenError as problem:
            record.status, record.error = "failed", str(problem)
        return record
    else:
        return record
    record.metrics = rundir.read_metrics(path / "metrics.csv")
    if (path / "config.yaml").is_file():
        try:
            record.config = comparable(Config.load(path / "config.yaml"))
        except KaizenError:
            record.config = None
    if record.status == "done":
        try:
            summary = rundir.read_json(path / "summary.json")
        except KaizenError as error:
            record.status, record.error = "failed", str(error)
            return record
        record.gap = _number(summary, "final.train_acc") - _number(summary, "final.val_acc")
        record.value = record.gap if metric == "gap" else _number(summary, metric)
        record.train_seconds = _number(summary, "timings.train_seconds")
        record.train_examples = summary.get("data", {}).get("train")
        record.test_size = summary.get("data", {}).get("test")
        record.correct = read_test_correct(path)
    return record


def _number(data: dict[str, Any], dotted: str) -> float:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return float(data) if isinstance(data, (int, float)) else math.nan


def _resolved(study: dict[str, Any], variant: VariantResult) -> dict[str, Any]:
    """The variant's config: from a run directory when one exists, else rebuilt from study.json."""
    for run in variant.runs:
        if run.config is not None:
            return run.config
    try:
        return comparable(Config.from_dict(study["base_config"]).override(variant.overrides))
    except KaizenError:
        return {}


def _config_diff(
    study: dict[str, Any], baseline: VariantResult, variant: VariantResult
) -> list[tuple[str, Any, Any]]:
    """(key, baseline value, variant value) for every key where the variant's config differs (seed aside)."""
    base, mine = dotted(_resolved(study, baseline)), dotted(_resolved(study, variant))
    keys = [key for key in mine if key != "train.seed"] + [key for key in base if key not in mine]
    return [(key, base.get(key), mine.get(key)) for key in keys if base.get(key) != mine.get(key)]
