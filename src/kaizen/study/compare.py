"""Compare: variants × seeds, each an ordinary run directory, run on a backend, resumable and locked.

A `Plan` is a base config, named variants (override lists; the first is the baseline unless named), seeds and
optionally split seeds. `run_plan` writes `DIR/study.json` (the plan) and `DIR/runs/<variant>/seed<k>/` (one
run directory per variant and seed; `split<s>-seed<k>/` when the data split varies too, `data.split_seed = s`). A run whose meta.json says `done` and whose config matches the plan is finished and skipped when
the same command runs again; a failed, stopped or half-written one is run again from scratch. A lock file
(`DIR/compare.lock`, owner pid and host) keeps a second compare out of a directory that one is using.
Where the runs execute (worker processes here, or Ray tasks) is the backend's business (`backends.py`);
everything above is the same for every backend.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.config import Config, unknown_key, valid_keys
from kaizen.errors import KaizenError
from kaizen.registry import did_you_mean
from kaizen.study import throughput
from kaizen.study.backends import Backend
from kaizen.study.backends import usable_cores as usable_cores
from kaizen.study.launch import open_backend
from kaizen.track import rundir

STUDY_FILE = "study.json"
LOCK_FILE = "compare.lock"
RUNS_DIR = "runs"
ERROR_FILE = "error.json"
MODES = ("grid", "one-at-a-time")
# Values of the summary.json a study can compare on; losses are better low, accuracies high.
METRICS = (
    "test.acc",
    "test.loss",
    "best.val_acc",
    "best.val_loss",
    "final.val_acc",
    "final.val_loss",
    "final.train_acc",
    "final.train_loss",
    "gap",  # final train accuracy - final validation accuracy: what a regulariser should narrow
)
# Keys that do not change what a run computes: a finished run is reused whatever they say.
_INCIDENTAL_KEYS = ("train.threads", "log")


@dataclass(frozen=True)
class Variant:
    """One arm of a study: an id (its folder name) and the overrides it applies to the base config."""

    id: str
    overrides: tuple[str, ...]


@dataclass
class Plan:
    """What a study runs: `base` with each variant's overrides, once per seed (train.seed = seed)."""

    base: Config
    variants: list[Variant]
    seeds: list[int]
    metric: str = "test.acc"
    baseline: str = ""
    kind: str = "compare"
    title: str = "compare"
    question: str = ""
    description: str = ""
    split_seeds: list[int] = field(default_factory=list)  # empty: every run shares the base's split
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.baseline = self.baseline or (self.variants[0].id if self.variants else "")

    def replicates(self) -> list[tuple[int | None, int]]:
        """(split seed, seed) of each run of a variant; split seed None when the split is shared."""
        return [(split, seed) for split in (self.split_seeds or [None]) for seed in self.seeds]

    def config(self, variant: Variant, seed: int, split: int | None = None) -> Config:
        """The resolved config of one run."""
        split_override = [] if split is None else [f"data.split_seed={split}"]
        return self.base.override([*variant.overrides, *split_override, f"train.seed={seed}"])

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what study.json holds)."""
        return {
            "kind": self.kind,
            "title": self.title,
            "question": self.question,
            "description": self.description,
            "metric": self.metric,
            "baseline": self.baseline,
            "seeds": self.seeds,
            **({"split_seeds": self.split_seeds} if self.split_seeds else {}),
            "variants": [{"id": v.id, "overrides": list(v.overrides)} for v in self.variants],
            "base_config": self.base.to_dict(),
            **self.extra,
        }


@dataclass(frozen=True)
class Event:
    """Progress of a study, one per run: status is skipped (finished earlier), done, failed or stopped."""

    variant: str
    seed: int
    status: str
    index: int
    total: int
    seconds: float = 0.0
    error: str | None = None
    path: Path | None = None
    split: int | None = None


@dataclass
class Outcome:
    """What one `run_plan` call did."""

    ran: int = 0
    skipped: int = 0
    failed: list[Event] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    threads: int = 1
    backend: str = "local"
    where: str = ""
    run_seconds: float = 0.0
    throughput: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------ building a plan


def split_values(text: str) -> list[str]:
    """Split `v1,v2,[1,2]` on the commas outside brackets and quotes."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_vary(text: str) -> tuple[str, list[str]]:
    """Parse one `--vary key=v1,v2`: the key must exist in the schema, values be distinct and non-empty."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise KaizenError(f"--vary '{text}' is not of the form dotted.key=value1,value2")
    keys = valid_keys()
    if key not in keys:
        raise KaizenError(f"--vary: {unknown_key(key)}")
    if key == "train.seed" or key.startswith("log"):
        raise KaizenError(f"--vary {key}: not a technique to compare (seeds come from --seeds)")
    values = split_values(rest)
    if any(value == "" for value in values):
        raise KaizenError(f"--vary '{text}': empty value (values are separated by commas)")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise KaizenError(f"--vary {key}: value '{repeated[0]}' is listed twice")
    return key, values


def _id_part(key: str, value: str) -> str:
    """`key=value` made safe as a folder name: brackets, quotes and spaces dropped, other symbols -."""
    kept = "".join(c for c in value if c not in "[]{}()'\" ")
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in kept)
    return f"{key}={safe or 'x'}"


def expand(vary: list[tuple[str, list[str]]], mode: str = "grid") -> list[Variant]:
    """Variants of `--vary` options: every combination (grid, the first values form the baseline) or each
    value on its own against the unchanged base (one-at-a-time, the baseline is `base`)."""
    if mode not in MODES:
        raise KaizenError(f"--mode must be {' or '.join(MODES)}, not '{mode}'")
    if not vary:
        raise KaizenError("nothing to compare: give at least one --vary key=value1,value2")
    keys = [key for key, _ in vary]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise KaizenError(f"--vary {repeated[0]} is given twice; list all its values in one --vary")
    if mode == "grid":
        combos = itertools.product(*[[(key, value) for value in values] for key, values in vary])
        variants = [
            Variant("+".join(_id_part(k, v) for k, v in combo), tuple(f"{k}={v}" for k, v in combo))
            for combo in combos
        ]
    else:
        variants = [Variant("base", ())] + [
            Variant(_id_part(key, value), (f"{key}={value}",)) for key, values in vary for value in values
        ]
    return _unique_ids(variants)


def _unique_ids(variants: list[Variant]) -> list[Variant]:
    """Make ids unique and short enough for a folder name (values that slug alike get a suffix)."""
    seen: dict[str, int] = {}
    unique = []
    for variant in variants:
        base_id = variant.id if len(variant.id) <= 120 else variant.id[:110]
        count = seen.get(base_id, 0)
        seen[base_id] = count + 1
        unique.append(Variant(base_id if count == 0 else f"{base_id}-{count + 1}", variant.overrides))
    return unique


def make_plan(
    base: Config,
    variants: list[Variant],
    seeds: int,
    metric: str = "test.acc",
    drop_same_as_baseline: bool = False,
    split_seeds: int = 0,
    **details: Any,
) -> Plan:
    """Validate everything a study needs before any run starts, and return its Plan.

    Every variant's config is built (so a bad value fails here, naming the variant); `seeds` must be at least
    1 and `metric` one of METRICS; `split_seeds` N > 0 runs every seed on N data splits (data.split_seed
    counting up from the base's). With `drop_same_as_baseline` a variant whose config equals the baseline's
    (one-at-a-time: a value the base already has) is left out.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise KaizenError(f"--seeds must be at least 1, not {seeds}")
    if not isinstance(split_seeds, int) or split_seeds < 0 or split_seeds == 1:
        raise KaizenError(f"--split-seeds must be at least 2 (or 0: one shared split), not {split_seeds}")
    if metric not in METRICS:
        raise KaizenError(
            f"--metric: unknown metric '{metric}'{did_you_mean(metric, list(METRICS))}; valid: {', '.join(METRICS)}"
        )
    if not variants:
        raise KaizenError("nothing to compare: no variants")
    first_seed = base.train.seed
    kept, baseline_config = [], None
    for variant in variants:
        try:
            resolved = comparable(base.override([*variant.overrides, f"train.seed={first_seed}"]))
        except KaizenError as error:
            what = " ".join(variant.overrides) or "(no overrides)"
            name = what if what == variant.id else f"{variant.id} ({what})"
            raise KaizenError(f"variant {name}: {str(error).removeprefix('override: ')}") from None
        if baseline_config is None:
            baseline_config = resolved
        elif drop_same_as_baseline and resolved == baseline_config:
            continue
        kept.append(variant)
    first_split = base.data.split_seed
    return Plan(
        base=base,
        variants=kept,
        seeds=[first_seed + k for k in range(seeds)],
        metric=metric,
        split_seeds=[first_split + k for k in range(split_seeds)],
        **details,
    )


def comparable(cfg: Config) -> dict[str, Any]:
    """The config as data without the keys that do not change a run's result (threads, logging)."""
    data = cfg.to_dict()
    for key in _INCIDENTAL_KEYS:
        section, _, leaf = key.partition(".")
        if leaf:
            data[section].pop(leaf, None)
        else:
            data.pop(section, None)
    return data


# ------------------------------------------------------------------------------------------ the lock


class StudyLock:
    """An exclusive lock on a study directory: `compare.lock` holding the owner's pid and host.

    Created atomically (O_CREAT | O_EXCL). A lock whose process is gone (same host) is stale and taken over;
    one held by a live process, or by another host, refuses with one line.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise KaizenError naming the process that holds it."""
        for _ in range(5):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is not None and _alive(holder):
                    raise KaizenError(
                        f"{self.path.parent} is in use by another compare (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('since', '?')}); wait for it, or use another "
                        f"--out (delete {self.path} only if that process is gone)"
                    ) from None
                self._remove_stale(holder)
                continue
            except OSError as error:
                raise KaizenError(f"cannot write in {self.path.parent}: {error.strerror}") from None
            with os.fdopen(handle, "w") as file:
                json.dump({**self.owner, "since": _now()}, file)
            return
        raise KaizenError(f"cannot take the lock {self.path}: it keeps changing hands")

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        holder = self._read()
        if (
            holder is not None
            and holder.get("pid") == self.owner["pid"]
            and holder.get("host") == self.owner["host"]
        ):
            self.path.unlink(missing_ok=True)

    def held(self) -> bool:
        """Whether a live process (another host counts as live) holds the lock now."""
        holder = self._read()
        return holder is not None and _alive(holder)

    def _read(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _remove_stale(self, holder: dict[str, Any] | None) -> None:
        if holder is None:  # unreadable: another process may be writing it this very moment
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return
            if age < 5:
                time.sleep(0.2)
                return
        if self._read() == holder:  # still the stale lock we judged, not a fresh one
            self.path.unlink(missing_ok=True)


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's owner may still be running (always assumed for another host)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _now() -> str:
    from kaizen.track.writer import now

    return now()


# ------------------------------------------------------------------------------------------ running


def run_path(out_dir: Path, variant: str, seed: int, split: int | None = None) -> Path:
    """Where the run of `variant` with `seed` (on the split of `split`, when splits vary) lives."""
    folder = f"seed{seed}" if split is None else f"split{split}-seed{seed}"
    return Path(out_dir) / RUNS_DIR / variant / folder


def check_workers(workers: int | None) -> None:
    """KaizenError unless `workers` is None (one per core) or a whole number of at least 1."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise KaizenError(f"--workers must be at least 1, not {workers}")


def run_plan(
    plan: Plan,
    out_dir: Path | str,
    workers: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    backend: str = "local",
    address: str | None = None,
) -> Outcome:
    """Run every unfinished (variant, seed) of `plan` under `out_dir` on `backend`.

    `local` runs them in `workers` processes on this machine (None: one per CPU core, or WORKERS_PER_GPU per
    GPU when the runs train on CUDA), every run with the config's train.threads (1 when unset: the fast choice
    for small models), whatever the layout; `workers` 1 trains in this process. `ray` runs each as a Ray task
    on the cluster at `address` (None: a local Ray instance), `workers` runs sharing each GPU. A failing run
    is recorded (its meta.json, or error.json when it failed before writing one) and never stops the others.
    `on_start(to_run, finished_earlier)` is called once the directory is locked and checked, and `on_event`
    once per run. The session's throughput goes to `out_dir/throughput.json` when it ran anything. Returns
    what was run, skipped and failed, and the throughput.
    """
    check_workers(workers)
    executor = open_backend(backend, address)  # bad backend input fails before anything is written
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise KaizenError(f"--out {out_dir} is a file, not a directory")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None
        with StudyLock(out_dir):
            return _run_locked(plan, out_dir, workers, executor, on_event or (lambda event: None), on_start)
    finally:
        executor.close()


def _run_locked(
    plan: Plan,
    out_dir: Path,
    workers: int | None,
    executor: Backend,
    on_event: Callable[[Event], None],
    on_start: Callable[[int, int], None] | None,
) -> Outcome:
    """run_plan's work once the directory is locked: triage, place, run, record, throughput."""
    began = time.perf_counter()
    tasks = [(variant, split, seed) for split, seed in plan.replicates() for variant in plan.variants]
    pending, finished = _triage(plan, out_dir, tasks)
    rundir.write_json(out_dir / STUDY_FILE, {**plan.to_dict(), "updated": _now()})
    total = len(tasks)
    if on_start is not None:
        on_start(len(pending), len(finished))
    for index, (variant, split, seed) in enumerate(finished, start=1):
        path = run_path(out_dir, variant.id, seed, split)
        on_event(Event(variant.id, seed, "skipped", index, total, path=path, split=split))
    outcome = Outcome(skipped=len(finished), backend=executor.name)
    if not pending:
        outcome.seconds = time.perf_counter() - began
        return outcome
    placement = executor.place(
        [plan.config(variant, seed, split).to_dict() for variant, split, seed in pending],
        workers,
        plan.base.train.threads,
    )
    outcome.workers, outcome.threads, outcome.where = placement.workers, placement.threads, placement.where
    jobs = [_job(plan, out_dir, variant, seed, split, placement.threads) for variant, split, seed in pending]
    splits = {job["path"]: split for job, (_, split, _) in zip(jobs, pending)}
    for index, result in enumerate(executor.run(jobs, placement), start=len(finished) + 1):
        event = Event(
            result["variant"],
            result["seed"],
            result["status"],
            index,
            total,
            seconds=result["seconds"],
            error=result.get("error"),
            path=Path(result["path"]),
            split=splits.get(result["path"]),
        )
        if event.status != "done":
            _record_failure(event)
            outcome.failed.append(event)
        outcome.ran += 1
        outcome.run_seconds += event.seconds
        on_event(event)
    outcome.seconds = time.perf_counter() - began
    outcome.throughput = throughput.summarize(
        outcome.ran - len(outcome.failed),
        len(outcome.failed),
        outcome.seconds,
        outcome.run_seconds,
        outcome.backend,
        outcome.where,
        _now(),
    )
    throughput.write(out_dir, outcome.throughput)
    return outcome


def _triage(plan: Plan, out_dir: Path, tasks: list[tuple[Variant, int | None, int]]) -> tuple[list, list]:
    """Split tasks into (to run, finished earlier); refuse when a finished run was made with another config."""
    pending, finished = [], []
    for task in tasks:
        variant, split, seed = task
        path = run_path(out_dir, variant.id, seed, split)
        if _is_done(path):
            try:
                old = comparable(Config.load(path / "config.yaml"))
            except KaizenError:
                pending.append(task)
                continue
            new = comparable(plan.config(variant, seed, split))
            if old != new:
                key = first_difference(old, new)
                raise KaizenError(
                    f"{out_dir} holds another study: {variant.id}/{path.name} was run with {key} = "
                    f"{lookup(old, key)!r}, this one has {lookup(new, key)!r}; use another --out"
                )
            finished.append(task)
        else:
            pending.append(task)
    return pending, finished


def _is_done(path: Path) -> bool:
    meta = path / "meta.json"
    if not meta.is_file() or not (path / "summary.json").is_file():
        return False
    try:
        return rundir.read_json(meta).get("status") == "done"
    except KaizenError:
        return False


def first_difference(old: Any, new: Any, prefix: str = "") -> str:
    """The dotted key of the first place two nested config dicts differ ("" when they are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [key for key in new if key not in old]:
            if old.get(key) != new.get(key):
                return first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".")


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a nested dict (None where it is absent)."""
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _job(
    plan: Plan, out_dir: Path, variant: Variant, seed: int, split: int | None, threads: int
) -> dict[str, Any]:
    """Everything a worker needs for one run, as plain data; the run's folder is emptied for a fresh start."""
    path = run_path(out_dir, variant.id, seed, split)
    cfg = plan.config(variant, seed, split).override([f"train.threads={threads}", "log.progress=false"])
    if path.exists():
        shutil.rmtree(path)
    (path / "checkpoints").mkdir(parents=True)
    return {"variant": variant.id, "seed": seed, "path": str(path), "config": cfg.to_dict()}


def _record_failure(event: Event) -> None:
    """Keep the error of a run that failed before its meta.json existed, in the run's folder."""
    path = Path(event.path)
    if not (path / "meta.json").is_file():
        rundir.write_json(path / ERROR_FILE, {"status": event.status, "error": event.error, "at": _now()})
