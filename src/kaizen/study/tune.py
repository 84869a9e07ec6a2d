"""Tune: hyperparameter search with Optuna (TPE), per-epoch pruning, a resumable shared study.

A search space is a list of `--space` texts, one per config key:

    optim.lr=log(1e-4,1e-1)        a float drawn on a log scale
    model.dropout=float(0,0.6)     a float
    train.batch_size=int(16,128)   an integer (`int(16,128,log)` on a log scale)
    optim.name=choice(sgd,adam)    one of the values, each parsed as YAML like --set (`choice([32],[64,32])`)

Every bound and every choice is put through the config before any trial runs, so a value the schema rejects
fails at once. Each trial is an ordinary run directory, `DIR/runs/trial-<number>/`; its validation metric is
reported to Optuna after every epoch, and a trial the pruner gives up on ends with status "pruned". The study
lives in an Optuna storage (default: the SQLite file `DIR/optuna.db`), so running the same command again
resumes it, and several processes on one storage share one search. `--trials N` is the search's total.
After the search, `DIR/best.yaml` (the best trial's full config), `DIR/trials.csv` and `DIR/importance.png`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from kaizen.config import Config, unknown_key, valid_keys
from kaizen.errors import KaizenError
from kaizen.registry import did_you_mean
from kaizen.study.compare import RUNS_DIR, comparable, first_difference, lookup, split_values
from kaizen.track import rundir

KINDS = ("float", "log", "int", "choice")
# The per-epoch metric a search optimises, and which way is better.
METRICS = {"val_acc": "maximize", "val_loss": "minimize"}
PRUNERS = ("median", "none")
MEDIAN_STARTUP_TRIALS = 5  # the median pruner judges no trial before this many have completed
DB_FILE = "optuna.db"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
IMPORTANCE_FILE = "importance.png"
SQLITE_BUSY_SECONDS = 60  # how long a process waits for another's write to the shared SQLite file
CONNECT_SECONDS = 10  # a database server that does not answer fails this fast, not after minutes
STORAGE_ATTEMPTS = 5  # opening a storage that another process is creating at the same moment
HEARTBEAT_SECONDS = 30  # a trial whose process died is marked failed after GRACE_SECONDS without a beat
GRACE_SECONDS = 90

# The pip package of a database module SQLAlchemy may ask for (postgresql:// means psycopg 3 since 2.1).
_DRIVERS = {"psycopg": '"psycopg[binary]"', "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}
_SPACE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([A-Za-z]+)\s*\((.*)\)\s*$", re.DOTALL)


# ------------------------------------------------------------------------------------ the search space


@dataclass(frozen=True)
class Param:
    """One dimension of the search: a config key and its range (float, log, int) or its choices."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    texts: tuple[str, ...] = ()  # the choices as written; a trial's override uses the text

    @property
    def spec(self) -> str:
        """The parameter as `--space` text, normalised (what the study remembers)."""
        if self.kind == "choice":
            return f"{self.key}=choice({','.join(self.texts)})"
        if self.kind == "int":
            return f"{self.key}=int({self.low},{self.high}{',log' if self.log else ''})"
        return f"{self.key}={'log' if self.log else 'float'}({self.low:g},{self.high:g})"

    def bounds(self) -> list[str]:
        """The overrides that must each be valid config values: both bounds, or every choice."""
        if self.kind == "choice":
            return [f"{self.key}={text}" for text in self.texts]
        return [f"{self.key}={_scalar(self.low)}", f"{self.key}={_scalar(self.high)}"]

    def suggest(self, trial: optuna.Trial) -> str:
        """Draw this parameter for `trial` and return its override, `key=value`."""
        if self.kind == "choice":
            value = trial.suggest_categorical(self.key, list(self.choices))
            return f"{self.key}={self.texts[_index(self.choices, value)]}"
        if self.kind == "int":
            return f"{self.key}={trial.suggest_int(self.key, self.low, self.high, log=self.log)}"
        return f"{self.key}={_scalar(trial.suggest_float(self.key, self.low, self.high, log=self.log))}"

    def show(self, value: Any) -> str:
        """A value this parameter took, short for people (floats to 3 significant digits)."""
        if self.kind == "choice":
            return self.texts[_index(self.choices, value)]
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    def override(self, value: Any) -> str:
        """The override of a value this parameter took in a trial."""
        if self.kind == "choice":
            return f"{self.key}={self.texts[_index(self.choices, value)]}"
        return f"{self.key}={_scalar(value)}"


def parse_space(text: str) -> Param:
    """Parse one `--space key=kind(args)`; the key must exist in the config schema."""
    match = _SPACE.match(text)
    if not match:
        raise KaizenError(
            f"--space '{text}' is not of the form key=log(low,high), float(low,high), int(low,high) or "
            "choice(a,b,...)"
        )
    key, kind, body = match.group(1), match.group(2).lower(), match.group(3)
    keys = valid_keys()
    if key not in keys:
        raise KaizenError(f"--space: {unknown_key(key)}")
    if key == "train.seed" or key.startswith(("log", "train.threads", "train.device")):
        raise KaizenError(f"--space {key}: not a hyperparameter to tune")
    if kind not in KINDS:
        raise KaizenError(f"--space {key}: unknown kind '{kind}'{did_you_mean(kind, list(KINDS))}")
    args = split_values(body) if body.strip() else []
    if kind == "choice":
        return _parse_choice(key, args)
    if kind == "int":
        log = len(args) == 3 and args[2].lower() == "log"
        if len(args) != 2 and not log:
            raise KaizenError(f"--space {key}=int(...): expected int(low,high) or int(low,high,log)")
        low, high = (_number(key, kind, arg, whole=True) for arg in args[:2])
    else:
        if len(args) != 2:
            raise KaizenError(f"--space {key}={kind}(...): expected {kind}(low,high), two numbers")
        low, high = (_number(key, kind, arg) for arg in args)
        log = kind == "log"
    if low >= high:
        raise KaizenError(f"--space {key}: the low bound {low:g} must be below the high bound {high:g}")
    if log and low <= 0:
        raise KaizenError(f"--space {key}: a log scale needs a low bound above 0, not {low:g}")
    return Param(key, "int" if kind == "int" else "float", low, high, log)


def _parse_choice(key: str, texts: list[str]) -> Param:
    if not texts or any(text == "" for text in texts):
        raise KaizenError(f"--space {key}=choice(...): empty value (values are separated by commas)")
    if len(texts) < 2:
        raise KaizenError(
            f"--space {key}=choice({texts[0]}): one value is no choice; use --set {key}={texts[0]}"
        )
    repeated = sorted({text for text in texts if texts.count(text) > 1})
    if repeated:
        raise KaizenError(f"--space {key}: value '{repeated[0]}' is listed twice")
    values = [_yaml_value(text) for text in texts]
    # Optuna stores plain scalars; a list or mapping (model.hidden=[64,32]) is a choice among its texts.
    plain = all(value is None or isinstance(value, (bool, int, float, str)) for value in values)
    keyed = [(type(value), value) for value in values]
    if not plain or len(set(keyed)) < len(keyed):
        values = list(texts)
    return Param(key, "choice", choices=tuple(values), texts=tuple(texts))


def _number(key: str, kind: str, text: str, whole: bool = False) -> float | int:
    try:
        number = float(text)
    except ValueError:
        raise KaizenError(f"--space {key}={kind}(...): '{text}' is not a number") from None
    if not math.isfinite(number):
        raise KaizenError(f"--space {key}={kind}(...): bounds must be finite, not {text}")
    if whole:
        if number != int(number):
            raise KaizenError(f"--space {key}=int(...): bounds must be whole numbers, not {text}")
        return int(number)
    return number


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _scalar(value: float | int) -> str:
    """A number as YAML reads it back (1e-05 alone would be a string to YAML 1.1)."""
    if isinstance(value, int):
        return str(value)
    return yaml.safe_dump(float(value)).split("\n")[0]


def _index(choices: tuple[Any, ...], value: Any) -> int:
    for index, choice in enumerate(choices):
        if type(choice) is type(value) and choice == value:
            return index
    raise KaizenError(f"the stored value {value!r} is not among the choices {list(choices)}")


def check_space(base: Config, space: list[Param]) -> None:
    """Raise KaizenError unless every key appears once and every bound and choice is a valid config value."""
    if not space:
        raise KaizenError(
            "nothing to tune: give at least one --space key=log(low,high) (or float, int, choice)"
        )
    keys = [param.key for param in space]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise KaizenError(f"--space {repeated[0]} is given twice")
    for param in space:
        for assignment in param.bounds():
            try:
                base.override([assignment])
            except KaizenError as error:
                raise KaizenError(f"--space {param.spec}: {str(error).removeprefix('override: ')}") from None


# ----------------------------------------------------------------------------------------- storage


def default_storage(out_dir: Path) -> str:
    """The SQLite file in the study directory."""
    return f"sqlite:///{(Path(out_dir) / DB_FILE).resolve()}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to an Optuna storage URL, or raise one line naming it (fast: no long connection retries)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise KaizenError(
            f"--storage '{url}' is not a database URL (e.g. sqlite:///tune.db, postgresql://user@host/db)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_SECONDS}
    elif backend in ("postgresql", "mysql"):
        connect_args = {"connect_timeout": CONNECT_SECONDS}
    else:
        connect_args = {}
    try:
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the heartbeat is "experimental"
                    return optuna.storages.RDBStorage(
                        url,
                        engine_kwargs={"connect_args": connect_args},
                        heartbeat_interval=HEARTBEAT_SECONDS,
                        grace_period=GRACE_SECONDS,
                    )
            except sqlalchemy.exc.DBAPIError as error:
                # Processes that open a new storage together race to create its tables; the loser sees
                # "already exists" (or a unique-constraint error) and finds the tables there a moment later.
                racing = isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)
                if not racing or attempt + 1 == STORAGE_ATTEMPTS:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ImportError as error:
        missing = getattr(error.__cause__, "name", None) or backend
        driver = _DRIVERS.get(missing, missing)
        raise KaizenError(
            f"--storage {shown}: its database driver is not installed (pip install {driver})"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise KaizenError(f"--storage {shown}: unknown database kind '{backend}'") from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise KaizenError(f"--storage {shown} cannot be reached: {reason}") from None


# ----------------------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class TrialEvent:
    """What one trial of this process did: state is complete, pruned or failed."""

    number: int
    state: str
    value: float | None
    overrides: list[str]
    shown: str  # the parameters, short: optim.lr=0.00449 optim.name=adam
    epochs: int
    seconds: float
    counted: int  # trials of the search that have ended, this one included
    total: int
    best_number: int | None
    best_value: float | None
    message: str = ""


@dataclass
class TuneResult:
    """A search after this process's share of trials: the Optuna study and what was written."""

    study: optuna.Study
    out_dir: Path
    storage: str
    metric: str
    space: list[Param]
    base: Config
    ran: int = 0
    seconds: float = 0.0
    importance: dict[str, float] | None = None
    importance_note: str = ""
    files: list[Path] = field(default_factory=list)

    @property
    def trials(self) -> list[FrozenTrial]:
        """Every trial in the storage, in number order."""
        return sorted(self.study.get_trials(deepcopy=False), key=lambda trial: trial.number)

    @property
    def best(self) -> FrozenTrial | None:
        """The best complete trial, or None when no trial has completed."""
        return best_trial(self.study)

    def best_config(self) -> Config | None:
        """The full config of the best trial (what best.yaml holds)."""
        best = self.best
        return None if best is None else self.base.override(trial_overrides(best, self.space))

    def counts(self) -> dict[str, int]:
        """Trials per state (complete, pruned, failed, running, ...)."""
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[_state(trial)] = counts.get(_state(trial), 0) + 1
        return counts


def tune(
    base: Config,
    space: list[str] | list[Param],
    trials: int = 20,
    out_dir: Path | str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    metric: str = "val_acc",
    pruner: str | optuna.pruners.BasePruner = "median",
    seed: int | None = None,
    on_start: Callable[[TuneResult, int, int], None] | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> TuneResult:
    """Search `space` on `base` until the study holds `trials` trials, and write best.yaml, trials.csv and
    importance.png in `out_dir`; return the TuneResult.

    `trials` is the search's total: trials run earlier (a resumed search) and by other processes on the same
    storage count (interrupted ones do not), so the same command run again continues where it stopped.
    `storage` None is `out_dir/optuna.db`; `study_name` None is the folder's name. `metric` val_acc is
    maximised, val_loss minimised. `pruner` is median, none or an Optuna pruner. TPE is seeded with `seed`
    (default train.seed) and the trial's number. Everything is validated before the first trial: a bad input
    raises KaizenError with one line. `on_start(result, counted, to_run)` is called before the first trial,
    `on_trial` after each.
    """
    params = [parse_space(text) if isinstance(text, str) else text for text in space]
    check_space(base, params)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise KaizenError(f"--trials must be at least 1, not {trials}")
    if metric not in METRICS:
        raise KaizenError(
            f"--metric: unknown metric '{metric}'{did_you_mean(metric, list(METRICS))}; valid: "
            f"{', '.join(METRICS)}"
        )
    if base.data.val_split == 0:
        raise KaizenError(f"--metric {metric} needs a validation split; data.val_split is 0")
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise KaizenError(f"--pruner must be {' or '.join(PRUNERS)}, not '{pruner}'")
    if not any(param.key.startswith("data.") for param in params):
        # every trial trains on the same data: a missing or unreadable file is bad input, found before trial 0
        from kaizen.data import load_data

        load_data(base.data, "cpu")
    out_dir = Path(out_dir) if out_dir is not None else Path("studies") / f"tune-{base.run_name()}"
    if storage is None:  # the default storage lives in the study directory
        _make_dir(out_dir)
    url = storage or default_storage(out_dir)
    name = study_name or out_dir.resolve().name
    with _quiet_optuna():
        connection = open_storage(url)
        _make_dir(out_dir)
        study = optuna.create_study(
            storage=connection,
            study_name=name,
            direction=METRICS[metric],
            pruner=_make_pruner(pruner, base.train.epochs),
            load_if_exists=True,
        )
        _claim(study, base, params, metric, url)
        result = TuneResult(study, out_dir, url, metric, params, base)
        seed = base.train.seed if seed is None else seed
        began = time.perf_counter()
        try:
            if on_start is not None:
                counted = _counted(study)
                on_start(result, counted, max(0, trials - counted))
            for event in _search(study, base, params, metric, trials, out_dir, seed):
                result.ran += 1
                write_outputs(result, importance=False)
                if on_trial is not None:
                    on_trial(event)
        finally:
            result.seconds = time.perf_counter() - began
        write_outputs(result)
    return result


def _make_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise KaizenError(f"--out {out_dir} is a file, not a directory")
    try:
        (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own log lines (and its traceback of a failed trial) off: kaizen reports each trial itself."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _make_pruner(pruner: str | optuna.pruners.BasePruner, epochs: int) -> optuna.pruners.BasePruner:
    if not isinstance(pruner, str):
        return pruner
    if pruner == "none":
        return optuna.pruners.NopPruner()
    # Judge no trial in its first quarter of epochs (at least the first): early epochs are noisy and say
    # little about the end. Optuna judges a step s only when s >= n_warmup_steps; steps are 1-based epochs.
    return optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=max(1, epochs // 4) + 1
    )


def _claim(study: optuna.Study, base: Config, params: list[Param], metric: str, url: str) -> None:
    """Record what the study searches, or refuse when the storage's study searches something else."""
    wanted = {"space": [param.spec for param in params], "metric": metric, "base_config": comparable(base)}
    held = study.user_attrs
    where = f"study '{study.study_name}' in {_shown(url)}"
    if study.direction.name.lower() != METRICS[metric]:
        raise KaizenError(
            f"{where} is {study.direction.name.lower()}d, and {metric} is {METRICS[metric]}d; use another "
            "--out / --study-name"
        )
    if "space" not in held:  # a new study (or one made outside kaizen, perhaps with enqueued trials)
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    if held["space"] != wanted["space"]:
        raise KaizenError(
            f"{where} searches another space ({' '.join(held['space'])}); use the same --space options, or "
            "another --out / --study-name"
        )
    if held.get("metric") != metric:
        raise KaizenError(
            f"{where} optimises {held.get('metric')}, not {metric}; use another --out / --study-name"
        )
    if held.get("base_config") != wanted["base_config"]:
        key = first_difference(held["base_config"], wanted["base_config"])
        raise KaizenError(
            f"{where} was made with {key} = {lookup(held['base_config'], key)!r}, this config has "
            f"{lookup(wanted['base_config'], key)!r}; use another --out / --study-name"
        )


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _counted(study: optuna.Study) -> int:
    """Trials that count towards --trials: finished (complete, pruned, failed by their config) or running.
    An interrupted trial (Ctrl-C, a killed process) does not count: the search runs another in its place."""
    with contextlib.suppress(Exception):  # stale trials of dead processes become failed (best effort)
        optuna.storages.fail_stale_trials(study)
    return sum(1 for trial in study.get_trials(deepcopy=False) if _counts(trial))


def _finished(study: optuna.Study) -> int:
    """Trials that count towards --trials and have ended (in any process)."""
    return sum(
        1 for trial in study.get_trials(deepcopy=False) if _counts(trial) and trial.state.is_finished()
    )


def _counts(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def _search(
    study: optuna.Study, base: Config, params: list[Param], metric: str, trials: int, out_dir: Path, seed: int
) -> Iterator[TrialEvent]:
    """Run trials one at a time until the study holds `trials`; yield each one's event."""
    finished: list[FrozenTrial] = []
    while True:
        # A fresh sampler seeded by (seed, the study's size): a search is reproducible, and processes that
        # share the storage draw different random start-up trials. SeedSequence spreads neighbouring seeds
        # (Mersenne Twister seeds 0 and 3 draw almost the same first numbers).
        size = len(study.get_trials(deepcopy=False))
        trial_seed = int(np.random.SeedSequence([seed, size]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed)
        # Processes that check at the same moment may each start a trial: the total can exceed `trials` by
        # one per extra process, never more.
        if _counted(study) >= trials:
            return
        study.optimize(
            lambda trial: _objective(trial, base, params, metric, out_dir),
            n_trials=1,
            catch=(Exception,),
            callbacks=[lambda _study, trial: finished.append(trial)],
        )
        trial = finished[-1]
        best = best_trial(study)
        yield TrialEvent(
            number=trial.number,
            state=_state(trial),
            value=trial.value,
            overrides=trial_overrides(trial, params),
            shown=describe(trial, params),
            epochs=len(trial.intermediate_values),
            seconds=trial.duration.total_seconds() if trial.duration else 0.0,
            counted=_finished(study),
            total=trials,
            best_number=best.number if best else None,
            best_value=best.value if best else None,
            message=trial.user_attrs.get("error") or trial.user_attrs.get("pruned", ""),
        )


def _objective(trial: optuna.Trial, base: Config, params: list[Param], metric: str, out_dir: Path) -> float:
    """Train one trial's config in its own run directory; return the metric of the model the run ends with."""
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import Pruned, fit

    overrides = [param.suggest(trial) for param in params]
    path = out_dir / RUNS_DIR / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(path))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics[metric], epoch)
        if epoch < cfg.train.epochs and trial.should_prune():  # a trial at its last epoch has nothing to save
            worse = "below" if METRICS[metric] == "maximize" else "above"
            message = (
                f"pruned after epoch {epoch}: {metric} {metrics[metric]:.4f} is {worse} the median of "
                "earlier trials"
            )
            trial.set_user_attr("pruned", message)
            raise Pruned(message)

    try:
        cfg = base.override(overrides)
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        fit(cfg, run_dir=path, reporter=Reporter(enabled=False), on_epoch=on_epoch)
    except Pruned:
        raise optuna.TrialPruned() from None
    except KaizenError as error:
        trial.set_user_attr("error", str(error))
        raise
    except Exception as error:  # one broken trial must not stop the search; its error is recorded
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        raise
    return ended_metric(rundir.read_json(path / "summary.json"), metric)


def ended_metric(summary: dict[str, Any], metric: str) -> float:
    """The metric (val_acc, val_loss) of the model a run ended with: its best checkpoint's when it restored
    that, else its last epoch's; NaN when the run has none."""
    ended = summary["best"] if summary.get("checkpoint") == "best.pt" else summary["final"]
    return float(ended.get(metric, math.nan))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda trial: (trial.value, -trial.number))


def trial_overrides(trial: FrozenTrial, params: list[Param]) -> list[str]:
    """The config overrides of a trial, in space order."""
    return [param.override(trial.params[param.key]) for param in params if param.key in trial.params]


def describe(trial: FrozenTrial, params: list[Param]) -> str:
    """A trial's parameters for people: `optim.lr=0.00449 optim.name=adam`."""
    return " ".join(
        f"{param.key}={param.show(trial.params[param.key])}" for param in params if param.key in trial.params
    )


# ------------------------------------------------------------------------------- confirming the best trials

# A confirming seed "collapsed" when it ends this far below the candidate's best seed (accuracy), or above
# COLLAPSE_LOSS_RATIO times its best loss, or fails: the mark of a rate at the edge of stability.
COLLAPSE_ACC_DROP = 0.10
COLLAPSE_LOSS_RATIO = 2.0


@dataclass(frozen=True)
class Confirmed:
    """A finalist of a search trained on more seeds: its trial, the metric of each seed (its own first; NaN
    for a run that failed), and whether a seed collapsed."""

    trial: FrozenTrial
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    maximize: bool

    @property
    def mean(self) -> float:
        """Mean over the seeds (a failed seed counts as the worst possible value)."""
        return float(np.mean(self._scored))

    @property
    def std(self) -> float:
        """Sample standard deviation over the seeds (0 with one seed)."""
        return float(np.std(self._scored, ddof=1)) if len(self._scored) > 1 else 0.0

    @property
    def bound(self) -> float:
        """The pessimistic score the choice ranks by: mean - std (maximised), mean + std (minimised)."""
        return self.mean - self.std if self.maximize else self.mean + self.std

    @property
    def collapsed(self) -> list[int]:
        """The seeds that collapsed or failed."""
        finite = [value for value in self.values if math.isfinite(value)]
        if not finite:
            return list(self.seeds)
        best = max(finite) if self.maximize else min(finite)
        return [
            seed
            for seed, value in zip(self.seeds, self.values)
            if not math.isfinite(value)
            or (best - value > COLLAPSE_ACC_DROP if self.maximize else value > COLLAPSE_LOSS_RATIO * best)
        ]

    @property
    def _scored(self) -> list[float]:
        worst = 0.0 if self.maximize else max((v for v in self.values if math.isfinite(v)), default=math.inf)
        return [value if math.isfinite(value) else worst for value in self.values]


def choose_stable(candidates: list[Confirmed]) -> tuple[Confirmed, str]:
    """The candidate to use and why: among those with no collapsed seed, the best mean - std (mean + std
    for a loss), so a rate that is good on one seed and collapses on another loses to one that is good on
    all; when every candidate collapsed somewhere, the best mean - std of all, saying so. Ties: the
    earliest trial."""
    stable = [candidate for candidate in candidates if not candidate.collapsed]
    pool = stable or candidates
    sign = 1 if candidates[0].maximize else -1
    chosen = max(pool, key=lambda c: (sign * c.bound, -c.trial.number))
    rule = "mean − std" if chosen.maximize else "mean + std"
    rejected = len(candidates) - len(stable)
    if not stable:
        why = f"every finalist collapsed on some seed; the best {rule} of all"
    elif rejected:
        why = f"the best {rule} of the {len(stable)} with no collapsed seed ({rejected} rejected)"
    else:
        why = f"the best {rule}; no seed collapsed"
    return chosen, why


def _state(trial: FrozenTrial) -> str:
    """complete, pruned, failed (its config or training failed), interrupted, running or waiting."""
    if trial.state == TrialState.FAIL:
        return "failed" if "error" in trial.user_attrs else "interrupted"
    return trial.state.name.lower()


# ----------------------------------------------------------------------------------------- outputs


def write_outputs(result: TuneResult, importance: bool = True) -> None:
    """Write trials.csv and best.yaml (and, with `importance`, importance.png) in the study directory."""
    out_dir = result.out_dir
    files = [out_dir / TRIALS_FILE]
    rundir.atomic_write_text(out_dir / TRIALS_FILE, trials_csv(result))
    best = result.best
    if best is not None:
        cfg = result.best_config()
        header = (
            f"# kaizen tune: the best of {len(result.trials)} trials of study '{result.study.study_name}': "
            f"trial {best.number}, {result.metric} {best.value:.6g}\n"
            f"# {' '.join(trial_overrides(best, result.space))}\n"
            f"# train it: kaizen train -c {out_dir / BEST_FILE}\n"
        )
        rundir.atomic_write_text(out_dir / BEST_FILE, header + cfg.to_yaml())
        files.append(out_dir / BEST_FILE)
    if importance:
        result.importance, result.importance_note = param_importance(result.study, result.space)
        if result.importance is not None:
            plot_importance(result.importance, out_dir / IMPORTANCE_FILE, result)
            files.append(out_dir / IMPORTANCE_FILE)
    result.files = files


def trials_csv(result: TuneResult) -> str:
    """Every trial: number, state, value, one column per parameter, epochs, seconds, run directory, host
    (the run directory is on that machine), note (why it was pruned or failed)."""
    keys = [param.key for param in result.space]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", result.metric, *keys, "epochs", "seconds", "run_dir", "host", "note"])
    for trial in result.trials:
        writer.writerow(
            [
                trial.number,
                _state(trial),
                "" if trial.value is None else f"{trial.value:.6g}",
                *[_param_text(trial.params.get(key)) for key in keys],
                len(trial.intermediate_values),
                f"{trial.duration.total_seconds():.1f}" if trial.duration else "",
                trial.user_attrs.get("run_dir", ""),
                trial.user_attrs.get("host", ""),
                trial.user_attrs.get("error") or trial.user_attrs.get("pruned", ""),
            ]
        )
    return buffer.getvalue()


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def param_importance(study: optuna.Study, space: list[Param]) -> tuple[dict[str, float] | None, str]:
    """(importance per parameter, fANOVA, largest first; a note) or (None, why it cannot be computed)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(space) < 2:
        return None, "no parameter importance: the search has one parameter"
    if len(complete) < 2:
        return None, f"no parameter importance: it needs 2 complete trials, the study has {len(complete)}"
    try:
        with _quiet_optuna():
            scores = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
    except (ValueError, RuntimeError) as error:
        return None, f"no parameter importance: {error}"
    if not scores:
        return None, "no parameter importance: no parameter varied among the complete trials"
    return dict(scores), f"parameter importance (fANOVA) over {len(complete)} complete trials"


def plot_importance(scores: dict[str, float], path: Path, result: TuneResult) -> None:
    """A horizontal bar chart of the parameters' importance, the most important on top; written atomically."""
    from matplotlib.figure import Figure

    names = list(scores)[::-1]
    values = [scores[name] for name in names]
    figure = Figure(figsize=(6.4, 1.2 + 0.45 * len(names)), dpi=110)
    axes = figure.subplots()
    bars = axes.barh(names, values, color="tab:blue")
    for bar, value in zip(bars, values):
        axes.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.2f}", va="center")
    axes.set_xlim(0, max(1.0, max(values) + 0.12))
    axes.set_xlabel(f"importance for {result.metric} (fANOVA, sums to 1)")
    complete = len(result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    axes.set_title(
        f"{result.study.study_name}: parameter importance · {complete} complete trials", fontsize=10
    )
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    rundir.atomic_write_bytes(path, buffer.getvalue())
