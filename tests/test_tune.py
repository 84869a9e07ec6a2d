"""kaizen tune: the space syntax, bad input (one line, exit 2, nothing trained), a real search on the tiny
digits MLP, pruning, resuming, and two processes sharing one SQLite storage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli

import kaizen
from kaizen.errors import KaizenError
from kaizen.study.tune import Param, parse_space

# The tiny MLP on one thread, no pictures: a trial is a fraction of a second.
BASE = [f"--set={item}" for item in [*TINY, "train.threads=1", "log.stats=false", "log.tensorboard=false"]]
SPACE = ["--space", "optim.lr=log(1e-3,1e-1)", "--space", "model.dropout=float(0,0.5)"]


def study_of(out: Path, name: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name or out.name, storage=f"sqlite:///{out / 'optuna.db'}")


# ------------------------------------------------------------------------------------------ space syntax


@pytest.mark.parametrize(
    "text, expected",
    [
        ("optim.lr=log(1e-4,1e-1)", Param("optim.lr", "float", 1e-4, 0.1, log=True)),
        ("model.dropout = float(0, 0.6)", Param("model.dropout", "float", 0.0, 0.6)),
        ("train.batch_size=int(16,128)", Param("train.batch_size", "int", 16, 128)),
        ("train.batch_size=int(16,128,log)", Param("train.batch_size", "int", 16, 128, log=True)),
        (
            "optim.name=choice(sgd,adam)",
            Param("optim.name", "choice", choices=("sgd", "adam"), texts=("sgd", "adam")),
        ),
        (
            "optim.lr=choice(0.1,1e-2)",
            Param("optim.lr", "choice", choices=(0.1, "1e-2"), texts=("0.1", "1e-2")),
        ),
    ],
)
def test_parse_space(text, expected):
    assert parse_space(text) == expected


def test_a_choice_of_lists_is_a_choice_of_their_texts():
    param = parse_space("model.hidden=choice([32],[64,32])")
    assert param.choices == ("[32]", "[64,32]")
    assert param.override("[64,32]") == "model.hidden=[64,32]"
    assert kaizen.Config().override([param.override("[64,32]")]).model.hidden == [64, 32]


def test_a_float_override_reads_back_as_the_same_number():
    param = parse_space("optim.lr=log(1e-6,1e-1)")
    assert kaizen.Config().override([param.override(1e-05)]).optim.lr == 1e-05


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.lr", "is not of the form key=log(low,high)"),
        ("optim.lr=log(1e-4)", "expected log(low,high), two numbers"),
        ("optim.lrr=log(1e-4,1e-1)", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optim.lr=gauss(0,1)", "unknown kind 'gauss'"),
        ("optim.lr=log(a,1)", "'a' is not a number"),
        ("optim.lr=float(0.1,0.1)", "the low bound 0.1 must be below the high bound 0.1"),
        ("optim.lr=log(0,1)", "a log scale needs a low bound above 0"),
        ("train.batch_size=int(16.5,128)", "bounds must be whole numbers"),
        ("train.batch_size=int(16,128,fast)", "expected int(low,high) or int(low,high,log)"),
        ("optim.name=choice()", "empty value"),
        ("optim.name=choice(sgd,,adam)", "empty value"),
        ("optim.name=choice(sgd)", "one value is no choice; use --set optim.name=sgd"),
        ("optim.name=choice(sgd,sgd)", "value 'sgd' is listed twice"),
        ("train.seed=int(0,9)", "not a hyperparameter to tune"),
    ],
)
def test_parse_space_rejects(text, message):
    with pytest.raises(KaizenError, match="^--space") as error:
        parse_space(text)
    assert message in str(error.value)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--space", "optim.lr=log(1e-3)"], "--space optim.lr=log(...): expected log(low,high)"),
        (["--space", "optim.lrr=log(1e-3,1)"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["--space", "optim.name=choice(sgd,foo)"], "--space optim.name=choice(sgd,foo): optim.name = 'foo'"),
        (["--space", "model.dropout=float(0,1)"], "--space model.dropout=float(0,1): model.dropout = 1.0"),
        (["--space", "train.batch_size=int(0,64)"], "train.batch_size = 0"),
        (
            ["--space", "optim.lr=log(1e-3,1)", "--space", "optim.lr=float(0.1,0.2)"],
            "optim.lr is given twice",
        ),
        ([], "nothing to tune"),
        ([*SPACE, "--trials", "0"], "--trials must be at least 1, not 0"),
        ([*SPACE, "--metric", "test_acc"], "unknown metric 'test_acc'"),
        ([*SPACE, "--pruner", "hyperband"], "--pruner must be median or none"),
        ([*SPACE, "--set", "data.val_split=0"], "needs a validation split"),
        (
            [*SPACE, "--storage", "sqlite:////nonexistent/dir/x.db"],
            "sqlite:////nonexistent/dir/x.db cannot be reached",
        ),
        ([*SPACE, "--storage", "nosuchdb://somewhere"], "unknown database kind"),
        (
            [*SPACE, "--storage", "postgresql://nobody:secret@127.0.0.1:1/x"],
            "postgresql://nobody:***@127.0.0.1:1/x",
        ),
    ],
)
def test_bad_input_is_one_line_and_trains_nothing(monkeypatch, capsys, tmp_path, args, culprit):
    out = tmp_path / "study"
    code, stdout, stderr = cli(monkeypatch, capsys, "tune", *BASE, *args, "--out", str(out))
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and culprit in stderr
    assert "Traceback" not in stderr and "secret" not in stderr
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())


# ------------------------------------------------------------------------------------------ a real search


def test_search_writes_best_config_that_reproduces_the_best_trial(monkeypatch, capsys, tmp_path):
    out = tmp_path / "search"
    space = [*SPACE, "--space", "optim.name=choice(sgd,adam)"]
    args = ["tune", *BASE, "--set", "train.epochs=3", *space, "--trials", "4", "--pruner", "none"]
    code, stdout, stderr = cli(monkeypatch, capsys, *args, "--out", str(out))
    assert code == 0, stderr
    assert "[4/4] trial 3" in stderr and "the study has 4: 4 complete" in stderr
    assert f"kaizen train -c {out / 'best.yaml'}" in stdout

    study = study_of(out)
    best = study.best_trial
    first_values = [trial.value for trial in study.trials]
    assert [trial.number for trial in study.trials] == [0, 1, 2, 3]
    assert sorted(path.name for path in (out / "runs").iterdir()) == [f"trial-000{k}" for k in range(4)]
    with open(out / "trials.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["state"] for row in rows] == ["complete"] * 4
    assert {"number", "val_acc", "optim.lr", "model.dropout", "optim.name", "run_dir"} <= set(rows[0])

    # best.yaml is the full config of the best trial: it loads, holds the trial's parameters, and training
    # it (same seed, CPU) gives the trial's validation accuracy again.
    cfg = kaizen.Config.load(out / "best.yaml")
    assert cfg.optim.lr == best.params["optim.lr"]
    assert cfg.model.dropout == best.params["model.dropout"]
    assert cfg.optim.name == best.params["optim.name"]
    rerun = kaizen.train(cfg.override([f"log.runs_dir={tmp_path / 'again'}"]))
    assert rerun.summary["final"]["val_acc"] == pytest.approx(best.value)

    # Parameter importance over 4 complete trials, drawn and printed.
    assert (out / "importance.png").stat().st_size > 5000
    assert "importance: " in stdout

    # The same command again with a larger total resumes the study: 2 more trials, the first 4 untouched.
    code, stdout, stderr = cli(
        monkeypatch, capsys, *args[:-4], "--trials", "6", "--pruner", "none", "--out", str(out)
    )
    assert code == 0, stderr
    assert "6 trials, 4 in the study already, 2 to run" in stderr
    resumed = study_of(out)
    assert [trial.number for trial in resumed.trials] == list(range(6))
    assert [trial.value for trial in resumed.trials[:4]] == first_values
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in resumed.trials)

    # Another space on the same study is refused before anything runs.
    code, _, stderr = cli(monkeypatch, capsys, "tune", *BASE, *SPACE, "--trials", "8", "--out", str(out))
    assert code == 2 and "searches another space" in stderr and stderr.count("\n") == 1
    assert len(study_of(out).trials) == 6


def test_the_median_pruner_stops_a_hopeless_trial(monkeypatch, capsys, tmp_path):
    """Five good trials, then one with a learning rate too small to learn: the default pruner stops it after
    its first judged epoch (epoch 2 of 4), and its run directory says so."""
    out = tmp_path / "prune"
    out.mkdir()
    study = optuna.create_study(
        study_name="prune", storage=f"sqlite:///{out / 'optuna.db'}", direction="maximize"
    )
    for lr in (0.05, 0.03, 0.02, 0.04, 0.01, 1e-6):  # trials queued by hand, as one may on a shared storage
        study.enqueue_trial({"optim.lr": lr})
    args = ["tune", *BASE, "--set", "train.epochs=4", "--space", "optim.lr=log(1e-6,1e-1)", "--trials", "6"]
    code, stdout, stderr = cli(monkeypatch, capsys, *args, "--out", str(out))
    assert code == 0, stderr
    trials = study_of(out).trials
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 5 + ["PRUNED"]
    hopeless = trials[5]
    assert hopeless.params["optim.lr"] == 1e-6 and max(hopeless.intermediate_values) == 2
    run = out / "runs" / "trial-0005"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "pruned" and "below the median" in meta["error"]
    assert (
        len((run / "metrics.csv").read_text().splitlines()) == 1 + 2 * 2
    )  # header + 2 epochs × (train, val)
    assert "trial 5 · optim.lr=1e-06 · pruned" in stderr
    assert "no parameter importance: the search has one parameter" in stdout


def test_two_processes_share_one_storage(tmp_path):
    """Two `kaizen tune` processes on the same SQLite study: every trial lands once, with its own number, and
    both processes contribute."""
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "kaizen", "tune", *BASE, "--set", "train.epochs=3", *SPACE]
    command += ["--trials", "8", "--pruner", "none", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
    workers.append(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    )
    results = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], results
    trials = study_of(out).trials
    # Two processes checking the total at the same moment may each start one last trial: 8, or 9.
    assert len(trials) in (8, 9)
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert len({trial.user_attrs["pid"] for trial in trials}) == 2
    runs = sorted(path.name for path in (out / "runs").iterdir())
    assert runs == [f"trial-{trial.number:04d}" for trial in trials]
    assert kaizen.Config.load(out / "best.yaml").optim.lr == study_of(out).best_trial.params["optim.lr"]


def test_python_api(tmp_path):
    result = kaizen.tune(
        kaizen.Config().override([*TINY, "train.threads=1", "log.stats=false", "log.tensorboard=false"]),
        ["optim.lr=log(1e-3,1e-1)"],
        trials=2,
        out_dir=tmp_path / "api",
        metric="val_loss",
        pruner="none",
    )
    assert result.ran == 2 and result.study.direction.name == "MINIMIZE"
    assert result.best.value == min(trial.value for trial in result.trials)
    assert result.best_config().optim.lr == result.best.params["optim.lr"]
    assert result.importance is None and "one parameter" in result.importance_note


def test_a_search_where_every_trial_fails_exits_1_with_the_reasons(monkeypatch, capsys, tmp_path):
    out = tmp_path / "study"
    code, _, err = cli(
        monkeypatch, capsys, "tune", *BASE, "--space", "optim.lr=log(1e-3,1e-1)", "--space",
        "model.hidden=choice([4],[8])", "--set", "train.clip_norm=1", "--trials", "2", "--out", str(out),
        "--set", "train.sample_weights=" + str(tmp_path / "absent.npy"),
    )  # fmt: skip
    assert code == 1
    assert err.count("failed · 0 epochs") == 2 and "absent.npy" in err
    assert f"no trial completed: see {out / 'trials.csv'}" in err
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [row["state"] for row in rows] == ["failed", "failed"]


def test_missing_data_is_bad_input_before_any_trial(monkeypatch, capsys, tmp_path):
    missing = tmp_path / "missing.npz"
    code, _, err = cli(
        monkeypatch, capsys, "tune", *BASE, "--set", "data.name=npz", "--set", f"data.path={missing}",
        "--space", "optim.lr=log(1e-3,1e-1)", "--trials", "2", "--out", str(tmp_path / "study"),
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "study" / "runs").exists()
