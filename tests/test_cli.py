"""The `kaizen` command as a user meets it: bad input gives exit code 2, one line naming the culprit, no
traceback, and nothing already written is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, cli, tiny_config

import kaizen
from kaizen.data.idx import write_idx
from kaizen.nn import build_model

# the tiny config of conftest as --set options, with the progress bar off so stderr holds only errors
KAGGLE_CNN = Path(__file__).parents[1] / "configs" / "kaggle_cnn.yaml"
TINY_SETS = [option for item in [*TINY, "log.progress=false"] for option in ("--set", item)]


def kaizen_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m kaizen *args` as a separate process, as a user's shell does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kaizen", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def assert_one_line_error(code: int, err: str, *culprits: str) -> str:
    """Exit code 2 and a single `error:` line on stderr that contains every culprit; return the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for culprit in culprits:
        assert culprit in lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# --- bad config ---------------------------------------------------------------------------------------

BAD_OVERRIDES = {
    "unknown key": ("optim.lrr=0.1", ["'optim.lrr'", "did you mean 'optim.lr'"]),
    "wrong type": ("train.epochs=abc", ["train.epochs", "'abc'", "integer"]),
    "negative lr": ("optim.lr=-0.1", ["optim.lr", "-0.1", "greater than 0"]),
    "dropout 1": ("model.dropout=1", ["model.dropout", "less than 1"]),
    "batch size 0": ("train.batch_size=0", ["train.batch_size", "greater than 0"]),
    "batch size 1": ("train.batch_size=1", ["train.batch_size = 1", "at least 2 examples", "batch norm"]),
    "val_split 1.5": ("data.val_split=1.5", ["data.val_split = 1.5", "fraction", "whole count"]),
    "preset": (
        "model.preset=mlpp",
        ["model.preset", "'mlpp'", "did you mean 'mlp'", "lenet5", "resnet_small"],
    ),
    "activation": ("model.activation=relux", ["model.activation", "'relux'", "sigmoid", "gelu"]),
    "optimiser": ("optim.name=adamx", ["optim.name", "'adamx'", "nesterov", "adamw"]),
    "schedule": ("schedule.name=cosin", ["schedule.name", "'cosin'", "onecycle", "plateau"]),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_bad_config_value_is_one_line_naming_the_key(monkeypatch, capsys, tmp_path, case):
    override, culprits = BAD_OVERRIDES[case]
    runs = tmp_path / "runs"
    code, out, err = cli(
        monkeypatch, capsys, "train", *TINY_SETS, "--set", f"log.runs_dir={runs}", "--set", override
    )
    assert_one_line_error(code, err, *culprits)
    assert out == ""
    assert not runs.exists()


def test_unknown_key_from_a_real_shell(tmp_path):
    result = kaizen_process("train", "--set", "optim.lrr=0.1", cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "'optim.lrr'", "did you mean 'optim.lr'")
    assert result.stdout == ""
    assert not list(tmp_path.iterdir())


def test_bad_value_in_a_config_file_names_the_file_and_key(monkeypatch, capsys, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("optim:\n  lr: 0.01\n  momentun: 0.9\n")
    code, _, err = cli(monkeypatch, capsys, "train", "-c", str(config))
    assert_one_line_error(code, err, str(config), "optim.momentun", "did you mean 'optim.momentum'")
    assert config.read_text() == "optim:\n  lr: 0.01\n  momentun: 0.9\n"


# --- bad data -----------------------------------------------------------------------------------------


def train_on(monkeypatch, capsys, tmp_path: Path, *sets: str) -> tuple[int, str, str]:
    args = [item for pair in zip(["--set"] * len(sets), sets) for item in pair]
    return cli(monkeypatch, capsys, "train", *TINY_SETS, "--set", f"log.runs_dir={tmp_path / 'runs'}", *args)


def test_missing_idx_files_name_the_folder_and_the_files_expected(monkeypatch, capsys, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    code, _, err = train_on(
        monkeypatch, capsys, tmp_path, "data.name=mnist", f"data.root={root}", "data.download=false"
    )
    assert_one_line_error(
        code, err, str(root), "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "data.download=true"
    )
    assert not (tmp_path / "runs").exists()


def corrupt_bad_magic(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x08\x01" + bytes(100))  # a labels header on the images file


def corrupt_truncated(path: Path) -> None:
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize(
    ("corrupt", "culprit"), [(corrupt_bad_magic, "magic 0x0803"), (corrupt_truncated, "truncated")]
)
def test_corrupt_idx_file_is_named(monkeypatch, capsys, tmp_path, corrupt, culprit):
    root = tmp_path / "data"
    root.mkdir()
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    images = root / "t10k-images-idx3-ubyte"
    corrupt(images)
    before = snapshot(root)

    code, _, err = train_on(
        monkeypatch, capsys, tmp_path, "data.name=mnist", f"data.root={root}", "data.download=false"
    )

    assert_one_line_error(code, err, str(images), culprit)
    assert snapshot(root) == before


CSV_HEADER = "label,pixel0,pixel1,pixel2,pixel3\n"


@pytest.mark.parametrize(
    ("rows", "culprits"),
    [
        ("1,0,0,0,0\n2,0,0,0\n", ["line 3", "4 columns, expected 5"]),
        ("1,0,0,0,0\n2,0,x,0,0\n", ["line 3", "pixel1", "'x' is not a number"]),
    ],
    ids=["column count", "non-numeric pixel"],
)
def test_malformed_csv_names_the_line(monkeypatch, capsys, tmp_path, rows, culprits):
    data = tmp_path / "train.csv"
    data.write_text(CSV_HEADER + rows)
    code, _, err = train_on(monkeypatch, capsys, tmp_path, "data.name=csv", f"data.path={data}")
    assert_one_line_error(code, err, str(data), *culprits)
    assert data.read_text() == CSV_HEADER + rows


# --- training problems --------------------------------------------------------------------------------


def test_diverging_run_exits_2_and_keeps_its_record(monkeypatch, capsys, tmp_path):
    code, out, err = train_on(
        monkeypatch,
        capsys,
        tmp_path,
        "train.epochs=4",
        "optim.name=sgd",
        "optim.lr=1e5",
        "model.norm=none",
        "schedule.name=constant",
    )
    assert_one_line_error(code, err, "diverged", "--set optim.lr=")
    assert out == ""
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "failed"
    assert (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.fixture
def two_epoch_run(tmp_path) -> kaizen.Run:
    # a constant rate: a resume may extend it (a cosine run's rates spread over train.epochs)
    return kaizen.train(tiny_config(tmp_path / "runs", "schedule.name=constant"))


def test_resume_without_last_checkpoint_names_it(monkeypatch, capsys, two_epoch_run):
    last = two_epoch_run.path / "checkpoints" / "last.pt"
    last.unlink()
    before = snapshot(two_epoch_run.path)

    code, _, err = cli(
        monkeypatch, capsys, "train", "--resume", str(two_epoch_run.path), "--set", "train.epochs=3"
    )

    assert_one_line_error(code, err, str(last), "not found")
    assert snapshot(two_epoch_run.path) == before


def test_resume_with_a_checkpoint_of_another_architecture_changes_nothing(
    monkeypatch, capsys, tmp_path, two_epoch_run
):
    narrow = kaizen.train(tiny_config(tmp_path / "narrow", "model.hidden=[16]"))
    shutil.copy(narrow.path / "checkpoints" / "last.pt", two_epoch_run.path / "checkpoints" / "last.pt")
    before = snapshot(two_epoch_run.path)

    code, _, err = cli(
        monkeypatch, capsys, "train", "--resume", str(two_epoch_run.path), "--set", "train.epochs=3"
    )

    assert_one_line_error(code, err, "last.pt", "another architecture", "(16, 64) there, (32, 64) here")
    assert snapshot(two_epoch_run.path) == before


def test_resume_continues_a_run_from_the_command_line(monkeypatch, capsys, two_epoch_run):
    code, out, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--quiet",
        "--resume",
        str(two_epoch_run.path),
        "--set",
        "train.epochs=3",
    )
    assert code == 0, err
    assert out.strip() == str(two_epoch_run.path)
    assert [row["epoch"] for row in kaizen.load_run(two_epoch_run.path).metrics()] == [1, 1, 2, 2, 3, 3]


def test_resume_refuses_a_config_file(monkeypatch, capsys, tmp_path, two_epoch_run):
    config = tmp_path / "other.yaml"
    config.write_text("{}\n")
    code, _, err = cli(monkeypatch, capsys, "train", "--resume", str(two_epoch_run.path), "-c", str(config))
    assert_one_line_error(code, err, "--resume", "drop --config")


def test_unwritable_runs_dir_is_named(monkeypatch, capsys, tmp_path):
    # A folder below a regular file cannot be created, even by root (for whom chmod does not block writes).
    blocker = tmp_path / "afile"
    blocker.write_text("precious\n")
    runs = blocker / "runs"
    code, _, err = cli(monkeypatch, capsys, "train", *TINY_SETS, "--set", f"log.runs_dir={runs}")
    assert_one_line_error(code, err, str(runs), "cannot write")
    assert blocker.read_text() == "precious\n"


# --- the other commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["empty folder", "no such folder"])
def test_eval_of_something_that_is_not_a_run(monkeypatch, capsys, tmp_path, which):
    target = tmp_path if which == "empty folder" else tmp_path / "nope"
    code, out, err = cli(monkeypatch, capsys, "eval", str(target))
    assert_one_line_error(code, err, str(target))
    assert out == ""
    assert not list(tmp_path.iterdir())


def test_predict_with_a_missing_input_file(monkeypatch, capsys, tmp_path, two_epoch_run):
    missing, written = tmp_path / "test.csv", tmp_path / "submission.csv"
    code, _, err = cli(
        monkeypatch,
        capsys,
        "predict",
        str(two_epoch_run.path),
        "--input",
        str(missing),
        "--out",
        str(written),
    )
    assert_one_line_error(code, err, str(missing), "not found")
    assert not written.exists()


def test_config_show_prints_the_resolved_yaml(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "config", "show", "--set", "optim.lr=0.5")
    assert code == 0, err
    assert "lr: 0.5" in out
    shown = yaml.safe_load(out)
    assert shown["optim"]["lr"] == 0.5
    assert kaizen.Config.from_dict(shown) == kaizen.Config().override(["optim.lr=0.5"])


def test_summary_prints_the_layer_table_with_totals(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "summary", "-c", str(KAGGLE_CNN), "--set", "data.name=digits")
    assert code == 0, err
    cfg = kaizen.Config.load(KAGGLE_CNN).override(["data.name=digits"])
    model = build_model(cfg.model, cfg.init, (1, 8, 8), 10)
    trainable = sum(p.numel() for p in model.parameters())
    running_stats = sum(
        b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))
    )
    assert "kaggle_cnn" in out and "digits" in out
    assert f"Total params: {trainable + running_stats:,}" in out
    assert f"Trainable params: {trainable:,}" in out
    assert f"Non-trainable params: {running_stats:,}" in out
    assert "head (Linear)" in out and "(N, 10)" in out


def test_train_reports_the_test_accuracy(monkeypatch, capsys, tmp_path):
    code, out, err = cli(monkeypatch, capsys, "train", *TINY_SETS, "--set", f"log.runs_dir={tmp_path}")
    assert code == 0, err
    (run_dir,) = tmp_path.iterdir()
    accuracy = kaizen.load_run(run_dir).summary["test"]["acc"]
    assert f"test acc {accuracy:.2%}" in out
    assert str(run_dir) in out.replace("\n", "")


def test_quiet_train_prints_only_the_run_path(tmp_path):
    sets = [option for item in [*TINY, f"log.runs_dir={tmp_path / 'runs'}"] for option in ("--set", item)]
    result = kaizen_process("train", "--quiet", *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    run = kaizen.load_run(lines[0])
    assert run.path.parent == tmp_path / "runs" and run.status == "done"
    assert "epoch" not in result.stderr  # no progress bar
