"""The results of a study, read back from its directory: study.json and the run directories, nothing else.

`collect(study_dir)` returns each variant's runs, the chosen metric per seed, its spread and 95% interval,
its difference from the baseline with a p-value and effect size, its rank and its train time per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.study import stats
from kaizen.study.compare import ERROR_FILE, STUDY_FILE, comparable, run_path
from kaizen.track import rundir


@dataclass
class RunRecord:
    """One (variant, seed) run as its directory tells it."""

    seed: int
    path: Path
    status: str  # done | failed | stopped | running | not run
    error: str | None = None
    value: float = math.nan
    train_seconds: float = math.nan
    gap: float = math.nan  # final train accuracy - final validation accuracy
    train_examples: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None


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

    @property
    def done(self) -> list[RunRecord]:
        """The runs that finished."""
        return [run for run in self.runs if run.status == "done"]

    @property
    def values(self) -> dict[int, float]:
        """The metric of each finished run, by seed."""
        return {run.seed: run.value for run in self.done if math.isfinite(run.value)}

    @property
    def status(self) -> str:
        """done (every seed), partial, failed (no seed finished, some failed) or incomplete."""
        finished = len(self.done)
        if finished == len(self.runs):
            return "done"
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
    """A whole study: its plan (study.json) and every variant's results, in plan order."""

    path: Path
    study: dict[str, Any]
    variants: list[VariantResult]

    @property
    def metric(self) -> str:
        """The compared summary value, e.g. test.acc."""
        return self.study["metric"]

    @property
    def higher_is_better(self) -> bool:
        """Accuracies are better high, losses low."""
        return not self.metric.endswith("loss")

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
    return rundir.read_json(path)


def collect(study_dir: Path | str) -> Results:
    """Read a study directory and compute every variant's statistics."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    metric = study["metric"]
    variants = [
        VariantResult(
            id=entry["id"],
            overrides=entry["overrides"],
            runs=[read_run(run_path(study_dir, entry["id"], seed), seed, metric) for seed in study["seeds"]],
            spread=stats.describe([]),
        )
        for entry in study["variants"]
    ]
    for variant in variants:
        variant.spread = stats.describe(list(variant.values.values()))
    baseline = next(v for v in variants if v.id == study["baseline"])
    for variant in variants:
        if variant is not baseline:
            variant.difference = stats.difference(baseline.values, variant.values)
        variant.config_diff = _config_diff(study, baseline, variant)
    sign = -1 if metric.endswith("loss") else 1
    scored = sorted((v for v in variants if v.values), key=lambda v: -sign * v.spread.mean)
    for rank, variant in enumerate(scored, start=1):
        variant.rank = rank
    return Results(path=study_dir, study=study, variants=variants)


def read_run(path: Path, seed: int, metric: str) -> RunRecord:
    """Read one run directory (or the error.json of a run that failed before it had one)."""
    record = RunRecord(seed=seed, path=path, status="not run")
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
        record.value = _number(summary, metric)
        record.train_seconds = _number(summary, "timings.train_seconds")
        record.gap = _number(summary, "final.train_acc") - _number(summary, "final.val_acc")
        record.train_examples = summary.get("data", {}).get("train")
    return record


def _number(data: dict[str, Any], dotted: str) -> float:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return float(data) if isinstance(data, (int, float)) else math.nan


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


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
    base, mine = _flatten(_resolved(study, baseline)), _flatten(_resolved(study, variant))
    keys = [key for key in mine if key != "train.seed"] + [key for key in base if key not in mine]
    return [(key, base.get(key), mine.get(key)) for key in keys if base.get(key) != mine.get(key)]
