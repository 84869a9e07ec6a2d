"""Data-parallel training: `kaizen train --devices 2` runs two CPU processes joined by Gloo.

Two processes, each on its slice of every global batch with DDP averaging the gradients, must take the steps
one process takes with the same global batch; only float summation order differs. Only rank 0 writes, and a
resumed two-process run continues as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, cli, tiny_config

import kaizen
from kaizen.track import rundir
from kaizen.training import distributed

# No batch norm, dropout or augmentation: the two-process run is then the one-process run up to float
# reduction order. Batch 64 on the 1,293 training digits leaves a last batch of 13 (split 6 + 7). A constant
# rate, so that 2 epochs resumed to 3 are 3 epochs.
EXACT = [
    "model.dropout=0",
    "model.norm=none",
    "schedule.name=constant",
    "train.batch_size=64",
    "train.epochs=3",
    "log.progress=false",
]
# The gap, in any weight, between one process and two after 3 epochs (measured: 3e-8).
WEIGHT_TOLERANCE = 1e-5


def launch(runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m kaizen train --devices 2 …` with the tiny config, in a separate process as a user runs it."""
    sets = [option for item in [*TINY, f"log.runs_dir={runs_dir}"] for option in ("--set", item)]
    return subprocess.run(
        [sys.executable, "-m", "kaizen", "train", "--devices", "2", *sets, *args],
        capture_output=True,
        text=True,
        cwd=runs_dir.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=240,
    )


def only_run(runs_dir: Path) -> Path:
    (path,) = runs_dir.iterdir()
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    return rundir.load_checkpoint(run / "checkpoints" / "last.pt", torch.device("cpu"))["model"]


def max_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[key] - b[key]).abs().max().item() for key in a)


needs_cores = pytest.mark.skipif(distributed.cpu_cores() < 2, reason="two training processes need two cores")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """(run directory, finished process) of `kaizen train --devices 2` with the EXACT config, 3 epochs."""
    runs = tmp_path_factory.mktemp("two") / "runs"
    done = launch(runs, *(option for item in EXACT for option in ("--set", item)))
    assert done.returncode == 0, done.stderr
    return only_run(runs), done


@needs_cores
def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(tmp_path, two_process_run):
    one = kaizen.train(tiny_config(tmp_path / "one", *EXACT))
    two, done = two_process_run

    # rank 1 made no run directory of its own and wrote nothing beside it; rank 0 alone reported
    assert sorted(path.name for path in two.parents[1].iterdir()) == ["runs"]
    assert done.stdout.count("done 3 epochs") == 1 and str(two) in done.stdout
    assert max_gap(weights(one.path), weights(two)) < WEIGHT_TOLERANCE
    summary = json.loads((two / "summary.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert summary["test"]["loss"] == pytest.approx(one.summary["test"]["loss"], abs=1e-5)
    assert summary["test"]["acc"] == pytest.approx(one.summary["test"]["acc"], abs=1 / summary["test"]["n"])
    assert summary["final"]["train_loss"] == pytest.approx(one.summary["final"]["train_loss"], abs=1e-5)


@needs_cores
def test_a_resumed_two_process_run_continues_as_if_never_stopped(tmp_path, two_process_run):
    uninterrupted, _ = two_process_run
    runs = tmp_path / "runs"
    sets = [option for item in [*EXACT, "train.epochs=2"] for option in ("--set", item)]
    assert launch(runs, *sets).returncode == 0
    short = only_run(runs)
    # each process's random state (dropout, augmentation) is kept: rank 1 draws its own numbers
    states = rundir.load_checkpoint(short / "checkpoints" / "last.pt", torch.device("cpu"))["rng"]["ranks"]
    assert len(states) == 2 and not torch.equal(states[0], states[1])

    resumed = launch(runs, "--resume", str(short), "--set", "train.epochs=3", "--quiet")

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(short)
    assert max_gap(weights(uninterrupted), weights(short)) == 0


@needs_cores
def test_an_error_in_every_process_is_reported_once(tmp_path):
    failed = launch(
        tmp_path / "runs", "--set", "data.name=npz", "--set", f"data.path={tmp_path / 'missing.npz'}"
    )

    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.npz" in errors[0], failed.stderr


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--devices", "0"], "--devices must be at least 1, not 0"),
        (["--devices", "3"], "--devices 3, but this machine has 2 CPU cores"),
        (
            ["--devices", "2", "--set", "train.batch_size=3"],
            "train.batch_size 3 is too small for 2 processes",
        ),
        (["--devices", "2", "--resume", "no-such-run"], "no-such-run"),
    ],
)
def test_bad_devices_get_one_line_and_exit_2(monkeypatch, capsys, tmp_path, args, culprit):
    monkeypatch.setattr(distributed, "cpu_cores", lambda: 2)
    monkeypatch.chdir(tmp_path)
    sets = [option for item in [*TINY, "log.progress=false"] for option in ("--set", item)]
    if "--resume" in args:
        sets = []

    code, out, err = cli(monkeypatch, capsys, "train", *sets, *args)

    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ") and culprit in err, err
    assert not (tmp_path / "runs").exists()


def test_more_devices_than_gpus_names_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(kaizen.KaizenError, match="--devices 2, but 1 CUDA device is visible"):
        distributed.check_devices(2, torch.device("cuda"), 64)


def test_devices_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(kaizen.KaizenError, match="under torchrun leave it out"):
        distributed.check_devices(2, torch.device("cpu"), 64)


def test_shares_of_a_batch_cover_it_once_and_weigh_to_its_mean():
    index = torch.arange(13)
    shares = [distributed.Group(rank=rank, world_size=2).shard(index) for rank in range(2)]
    assert torch.equal(torch.cat(shares), index) and [len(share) for share in shares] == [6, 7]
    group = distributed.Group(world_size=2)
    # DDP averages the two scaled means: (6/13·2·m0 + 7/13·2·m1) / 2 is the mean over all 13
    assert sum(group.loss_scale(len(share), 13) for share in shares) / 2 == pytest.approx(1.0)


@needs_cores
def test_the_python_api_launches_the_same_session_as_the_command(tmp_path):
    cfg = tiny_config(tmp_path / "runs", *EXACT, "train.epochs=1")

    run = kaizen.train(cfg, devices=2)

    assert run is not None and run.path == only_run(tmp_path / "runs")  # the run it made, known to the caller
    assert run.summary["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert run.summary["epochs_completed"] == 1
