"""Ensembles (seed 001): seeds, bagging, boosting, stacking and snapshots, each beside its best member."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config
from test_cli import TINY_SETS, assert_one_line_error, cli

import kaizen
from kaizen.config import ScheduleConfig, TrainConfig
from kaizen.data import load_data
from kaizen.ensemble import train_ensemble, vote
from kaizen.training.examples import bootstrap_indices, fold_assignment, select_examples
from kaizen.training.schedule import LRSchedule

QUIET = ["log.tensorboard=false", "log.stats=false", "log.progress=false"]


def config(tmp_path: Path, *overrides: str) -> kaizen.Config:
    return tiny_config(tmp_path / "unused", *QUIET, *overrides)


def write_config(tmp_path: Path, *overrides: str) -> Path:
    path = tmp_path / "member.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, *overrides).to_dict()))
    return path


# --- combining ------------------------------------------------------------------------------------------


def test_seed_ensemble_beats_its_best_member(tmp_path: Path, monkeypatch, capsys):
    """`kaizen ensemble -c FILE --method seeds -k 5`: five MLPs that differ only in their seed."""
    path = write_config(tmp_path, "train.epochs=4")
    code, out, err = cli(
        monkeypatch,
        capsys,
        "ensemble",
        "-c",
        str(path),
        "--method",
        "seeds",
        "-k",
        "5",
        "--out",
        str(tmp_path / "ens"),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert len(report["members"]) == 5 and report["ensemble"]["rule"] == "average"
    assert report["ensemble"]["acc"] > report["best_member"]["acc"]
    assert report["gain"] > 0 and "vs best member" in out
    seeds = [kaizen.load_run(member["path"]).config.train.seed for member in report["members"]]
    assert seeds == [0, 1, 2, 3, 4]


def test_ensemble_of_finished_runs_by_average_and_vote(tmp_path: Path, monkeypatch, capsys):
    runs = [
        kaizen.train(config(tmp_path, f"train.seed={seed}", f"log.runs_dir={tmp_path}")) for seed in range(3)
    ]
    paths = [str(run.path) for run in runs]
    code, out, err = cli(
        monkeypatch, capsys, "ensemble", *paths, "--method", "vote", "--out", str(tmp_path / "e")
    )
    assert code == 0, err
    report = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert report["ensemble"]["rule"] == "vote" and set(report["combined"]) == {"average", "vote"}
    assert [member["acc"] for member in report["members"]] == [run.summary["test"]["acc"] for run in runs]


def test_vote_counts_weights_and_breaks_ties_by_probability():
    a = torch.tensor([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
    b = torch.tensor([[0.0, 0.9, 0.1], [0.5, 0.5, 0.0]])
    assert vote([a, b]).tolist() == [1, 2]  # each row a 1-1 tie: the higher mean probability wins
    assert vote([a, b], [2.0, 1.0]).tolist() == [0, 2]


# --- training the members -------------------------------------------------------------------------------


def test_bagging_trains_on_bootstrap_resamples(tmp_path: Path):
    data = load_data(config(tmp_path).data)
    resampled, example_weights = select_examples(data, TrainConfig(bootstrap=True, seed=3), split_seed=0)
    assert len(resampled.y_train) == len(data.y_train) and example_weights is None
    drawn = bootstrap_indices(len(data.y_train), 3)
    assert 0.55 < len(np.unique(drawn)) / len(drawn) < 0.72  # about 1 - 1/e of the examples, some twice
    assert not np.array_equal(drawn, bootstrap_indices(len(data.y_train), 4))
    result = train_ensemble([config(tmp_path, "train.epochs=3")], "bagging", 2, tmp_path / "bag")
    runs = [kaizen.load_run(member.path) for member in result.members]
    assert [run.config.train.bootstrap for run in runs] == [True, True]
    assert {"average", "vote"} == set(result.combined)


def test_boosting_reweights_the_examples_the_last_member_got_wrong(tmp_path: Path):
    result = train_ensemble([config(tmp_path, "train.epochs=2")], "boosting", 3, tmp_path / "boost")
    assert result.rule == "samme" and len(result.members) == 3
    assert all(member.weight > 0 for member in result.members)  # each better than chance (error < 0.9)
    first = kaizen.load_run(result.members[0].path)
    weights = np.load(tmp_path / "boost" / "boosting-weights" / "member-2.npy")
    data = load_data(first.config.data)
    model, _ = first.model()
    with torch.no_grad():
        wrong = (model(data.x_train).argmax(1) != data.y_train).numpy()
    assert np.allclose(np.load(tmp_path / "boost" / "boosting-weights" / "member-1.npy"), 1.0)
    assert weights[wrong].min() > weights[~wrong].max()  # every mistake now outweighs every success
    assert weights.mean() == pytest.approx(1.0)


def test_stacking_fits_a_meta_classifier_on_out_of_fold_probabilities(tmp_path: Path):
    labels = np.repeat(np.arange(10), 13)
    folds = fold_assignment(labels, 3, seed=0)
    assert np.bincount(folds).tolist() == [44, 43, 43] and all(
        len(np.unique(folds[labels == label])) == 3 for label in range(10)
    )
    result = train_ensemble([config(tmp_path, "train.epochs=5")], "stacking", 3, tmp_path / "stack")
    assert result.rule == "stacking" and len(result.members) == 3
    member_data = [kaizen.load_run(member.path).summary["data"]["train"] for member in result.members]
    full = len(load_data(config(tmp_path).data).y_train)
    assert sum(member_data) == 2 * full  # each fold model trains on the other two folds
    assert result.accuracy > 0.8


def test_snapshot_ensemble_saves_one_checkpoint_per_cycle(tmp_path: Path):
    result = train_ensemble([config(tmp_path, "train.epochs=4")], "snapshot", 2, tmp_path / "snap")
    (run_dir,) = {Path(member.path) for member in result.members}
    assert sorted(path.name for path in (run_dir / "checkpoints").glob("snapshot-*.pt")) == [
        "snapshot-1.pt",
        "snapshot-2.pt",
    ]
    assert [member.name.split("/")[-1] for member in result.members] == ["snapshot-1.pt", "snapshot-2.pt"]


def test_cyclic_schedule_restarts_each_cycle():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    schedule = LRSchedule(optimizer, ScheduleConfig(name="cyclic", cycles=2), epochs=4, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(schedule.current_lr())
        schedule.step()
    assert rates[0] == rates[20] == pytest.approx(0.1)
    assert rates[19] < 0.002 and rates[39] < 0.002
    assert [schedule.cycle_ended(epoch) for epoch in (1, 2, 3, 4)] == [None, 1, None, 2]
    with pytest.raises(kaizen.KaizenError, match="schedule.cycles = 3 must divide train.epochs = 4"):
        LRSchedule(optimizer, ScheduleConfig(name="cyclic", cycles=3), epochs=4, steps_per_epoch=10)


# --- bad input ------------------------------------------------------------------------------------------


def test_runs_of_different_classes_or_data_are_refused(tmp_path: Path, monkeypatch, capsys):
    digits = kaizen.train(config(tmp_path, f"log.runs_dir={tmp_path}", "train.epochs=1"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x=rng.random((60, 1, 8, 8), dtype=np.float32), y=np.arange(60) % 3)
    three = kaizen.train(
        config(
            tmp_path,
            f"log.runs_dir={tmp_path}",
            "train.epochs=1",
            "data.name=npz",
            f"data.path={tmp_path / 'three.npz'}",
        )
    )
    code, _, err = cli(monkeypatch, capsys, "ensemble", str(digits.path), str(three.path))
    assert_one_line_error(code, err, "cannot ensemble", "num_classes 10 vs 3")
    other_split = kaizen.train(
        config(tmp_path, f"log.runs_dir={tmp_path}", "train.epochs=1", "data.split_seed=1")
    )
    code, _, err = cli(monkeypatch, capsys, "ensemble", str(digits.path), str(other_split.path))
    assert_one_line_error(code, err, "cannot ensemble", "test splits differ", "data.split_seed 0 vs 1")


def test_bad_ensemble_requests_are_one_line(tmp_path: Path, monkeypatch, capsys):
    code, _, err = cli(
        monkeypatch, capsys, "ensemble", "--method", "boostin", "--out", str(tmp_path), *TINY_SETS
    )
    assert_one_line_error(
        code, err, "unknown ensemble method 'boostin'", "did you mean 'boosting'", "stacking"
    )
    code, _, err = cli(monkeypatch, capsys, "ensemble", "--method", "seeds", *TINY_SETS)
    assert_one_line_error(code, err, "--out")
    code, _, err = cli(
        monkeypatch, capsys, "ensemble", "--method", "snapshot", "-k", "3", "--out", str(tmp_path), *TINY_SETS
    )
    assert_one_line_error(code, err, "schedule.cycles = 3 must divide train.epochs = 2")
