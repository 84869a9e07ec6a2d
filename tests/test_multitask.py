"""Multi-task learning (seed 001): a shared trunk, several heads, weighted losses, metrics per task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_cli import TINY_SETS, assert_one_line_error, cli

import kaizen
from kaizen.inference import evaluate_run
from kaizen.nn.heads import MultiTaskNet
from kaizen.nn.inspect import inspect_config
from kaizen.training.multitask import decoder

QUIET = ["log.tensorboard=false", "log.stats=false"]
THREE_TASKS = "model.tasks=[{name: class}, {name: parity, weight: 0.5}, {name: reconstruction, weight: 0.2}]"


def train(tmp_path: Path, *overrides: str) -> kaizen.Run:
    return kaizen.train(tiny_config(tmp_path / "runs", *QUIET, "train.epochs=5", *overrides))


@pytest.fixture(scope="module")
def three_tasks(tmp_path_factory: pytest.TempPathFactory) -> kaizen.Run:
    """Digit class + parity + reconstruction through a transposed-conv decoder, on one trunk."""
    return train(tmp_path_factory.mktemp("multitask"), THREE_TASKS)


def test_every_task_learns_and_reports_its_metric(three_tasks: kaizen.Run):
    tasks = three_tasks.summary["tasks"]
    assert tasks["class"]["acc"] == pytest.approx(three_tasks.summary["test"]["acc"], abs=1e-6)
    assert tasks["class"]["acc"] > 0.85
    assert tasks["parity"]["acc"] > 0.85  # odd/even of the digit, far above the 0.5 of guessing
    assert tasks["reconstruction"]["mse"] < 0.8  # inputs are standardised: predicting 0 scores about 1
    records = [json.loads(line) for line in (three_tasks.path / "stats.jsonl").read_text().splitlines()]
    per_epoch = {(record["epoch"], record["name"]) for record in records if record["kind"] == "custom"}
    assert {(5, "val_parity_acc"), (5, "val_reconstruction_mse")} <= per_epoch


def test_the_trunk_is_shared_and_names_are_kept(three_tasks: kaizen.Run):
    model, _ = three_tasks.model()
    assert isinstance(model, MultiTaskNet)
    names = [name for name, _ in model.named_parameters()]
    assert names[:2] == ["fc1.weight", "fc1.bias"] and "head.weight" in names  # as in a single-task model
    assert any(name.startswith("tasks.reconstruction.deconv") for name in names)
    outputs = model.forward_all(torch.zeros(3, 1, 8, 8))
    assert outputs["class"].shape == (3, 10) and outputs["parity"].shape == (3, 2)
    assert outputs["reconstruction"].shape == (3, 1, 8, 8)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)  # the classifier stays the model's output
    evaluation, _ = evaluate_run(three_tasks)
    assert evaluation.accuracy == pytest.approx(three_tasks.summary["test"]["acc"], abs=1e-6)


def test_a_task_weight_of_zero_leaves_its_head_untrained(tmp_path: Path, three_tasks: kaizen.Run):
    ignored = train(tmp_path, "model.tasks=[{name: parity, weight: 0.0}]")
    assert ignored.summary["tasks"]["parity"]["acc"] < 0.7 < three_tasks.summary["tasks"]["parity"]["acc"]


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 7, 9)])
def test_decoder_rebuilds_the_input_shape(shape):
    assert decoder(20, shape)(torch.zeros(2, 20)).shape == (2, *shape)


def test_bad_task_names_are_one_line(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "train", *TINY_SETS, "--set", "model.tasks=[{name: parityy}]")
    assert_one_line_error(
        code, err, "model.tasks.0.name", "'parityy'", "did you mean 'parity'", "reconstruction"
    )
    code, _, err = cli(
        monkeypatch, capsys, "train", *TINY_SETS, "--set", "model.tasks=[{name: parity}, {name: parity}]"
    )
    assert_one_line_error(code, err, "model.tasks", "'parity' is listed twice")


def test_summary_and_inspect_build_the_network_with_its_heads(three_tasks: kaizen.Run, monkeypatch, capsys):
    """One builder: `kaizen summary`, `kaizen inspect` and the trained run see the same parameters."""
    trained = sum(p.numel() for p in three_tasks.model()[0].parameters())
    assert trained == three_tasks.summary["params"]["total"]
    code, out, _ = cli(monkeypatch, capsys, "summary", *TINY_SETS, "--set", THREE_TASKS)
    assert code == 0 and "tasks (ModuleDict)" in out and f"Trainable params: {trained:,}" in out
    layers = [layer.name for layer in inspect_config(three_tasks.config)]
    assert any("tasks" in name and "reconstruction" in name for name in layers), layers
