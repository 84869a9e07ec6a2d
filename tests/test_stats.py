"""Seeing inside training: the statistics recorder, stats.jsonl, TensorBoard, the pictures and `kaizen inspect`.

Tiny real models on the bundled digits set; each claim is checked on what a run leaves in its directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import cli, tiny_config
from torch import nn

import kaizen
from kaizen.nn import build_model
from kaizen.nn.inspect import inspect_batch
from kaizen.track.progress import Reporter
from kaizen.track.rundir import read_stats
from kaizen.track.stats import SAMPLES_PER_EPOCH, StatsRecorder, sample_every
from kaizen.track.writer import NullWriter, RunWriter
from kaizen.training.loop import fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUIET = ["log.tensorboard=false", "log.plots=false"]


def records(run: kaizen.Run, kind: str) -> list[dict]:
    return [record for record in read_stats(run.path / "stats.jsonl") if record["kind"] == kind]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> kaizen.Run:
    """A 3-epoch ReLU MLP with two hidden layers, with every recording switch at its default (all on)."""
    cfg = tiny_config(
        tmp_path_factory.mktemp("stats") / "runs", "model.hidden=[32,16]", "train.epochs=3", "log.plots=true"
    )
    return kaizen.train(cfg)


# --- stats.jsonl ---------------------------------------------------------------------------------------------


def test_stats_has_one_record_per_layer_and_epoch(mlp_run):
    layers, activations = records(mlp_run, "layer"), records(mlp_run, "activation")
    assert [r["layer"] for r in layers if r["epoch"] == 1] == ["fc1", "fc2", "head"]
    assert [r["layer"] for r in activations if r["epoch"] == 1] == ["act1", "act2"]
    assert sorted({r["epoch"] for r in layers}) == [1, 2, 3]
    for record in layers:
        assert record["grad_norm"] > 0 and record["weight_norm"] > 0
        assert 0 < record["update_ratio"] < 1  # Adam at 1e-3 moves weights by a small fraction per step
        assert record["grad_norm_max"] >= record["grad_norm"]
    for record in activations:
        assert record["min"] >= 0 and record["max"] > record["mean"] > 0 and record["std"] > 0
        assert 0 <= record["dead"] <= 1 and record["saturated"] is None  # ReLU: dead units, no saturation
        assert sum(record["hist"]["counts"]) > 0
    (model,) = [r for r in records(mlp_run, "model") if r["epoch"] == 1]
    steps = mlp_run.summary["data"]["train"] // 32
    assert model["every"] == steps // SAMPLES_PER_EPOCH and model["samples"] == SAMPLES_PER_EPOCH


def test_gradient_norm_is_measured_before_clipping(make_config):
    """Clipping at a tiny norm changes the update, not the recorded raw gradient norm."""
    cfg = make_config("train.epochs=1", *QUIET, "optim.name=sgd", "optim.lr=0.01")
    free = records(kaizen.train(cfg), "model")[0]["grad_norm"]
    clipped = records(kaizen.train(cfg.override(["train.clip_norm=0.001"])), "model")[0]["grad_norm"]
    assert clipped > 0.01  # far above the clip threshold: the raw norm
    assert clipped == pytest.approx(free, rel=0.5)


def test_saturated_fraction_of_a_squashing_layer(make_config):
    cfg = make_config(
        "model.activation=tanh", "model.norm=none", "init.weights=normal", "init.std=1.0", *QUIET
    )
    (first, *_) = records(kaizen.train(cfg), "activation")
    assert first["dead"] is None and first["saturated"] > 0.3  # inputs of std ~8 pin tanh at ±1


def test_recording_does_not_change_training(make_config):
    """Same seed, stats and TensorBoard on or off: the same metrics (the recorder only observes)."""
    on = kaizen.train(make_config("log.stats=true", "log.tensorboard=true"))
    off = kaizen.train(make_config("log.stats=false", "log.tensorboard=false"))
    assert [(r["loss"], r["acc"]) for r in on.metrics()] == [(r["loss"], r["acc"]) for r in off.metrics()]
    assert not (off.path / "stats.jsonl").exists() and not (off.path / "tb").exists()
    assert (on.path / "stats.jsonl").is_file() and any((on.path / "tb").iterdir())


def test_stats_every_sets_the_sampling(make_config):
    run = kaizen.train(make_config("log.stats_every=5", "train.epochs=1", *QUIET))
    steps = run.summary["data"]["train"] // 32 + 1  # 1,293 images: 40 full batches and one of 13
    (model,) = records(run, "model")
    assert model["every"] == 5 and model["samples"] == steps // 5


def test_sample_every_gives_a_few_samples_per_epoch_and_at_least_one():
    assert sample_every(41, None) == 10
    assert sample_every(3, None) == 1  # fewer steps than samples: every step
    assert sample_every(20, 500) == 20  # a larger interval than the epoch: its last step
    with pytest.raises(kaizen.KaizenError, match="log.stats_every"):
        kaizen.Config().override(["log.stats_every=0"])


def test_unsampled_steps_attach_no_hooks_and_measure_nothing(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    writer = RunWriter(tmp_path, plots=False, stats=True)
    recorder = StatsRecorder(model, kaizen.Config().log, steps_per_epoch=8, writer=writer)
    calls = []
    model[2].register_forward_hook(lambda *args: calls.append(len(model[2]._forward_hooks)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(8):
        recorder.before_forward(step)
        model(torch.randn(4, 1, 8, 8)).sum().backward()
        recorder.after_backward(step)
        optimizer.step()
        recorder.after_step(step)
    # every = 8 // 4 = 2: steps 1, 3, 5, 7 carry the recorder's hook besides the test's own
    assert calls == [1, 2, 1, 2, 1, 2, 1, 2]
    assert len(recorder.samples) == 4 and not recorder.hooks


def test_null_writer_switches_the_recorder_off():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert not StatsRecorder(model, kaizen.Config().log, 10, NullWriter()).enabled


def test_resume_keeps_the_statistics_of_the_epochs_it_keeps(make_config):
    class StopAtEpoch(Reporter):
        def __init__(self):
            super().__init__(enabled=False)

        def epoch_end(self, epoch: int, metrics: dict) -> None:
            if epoch + 1 == 2:
                raise KeyboardInterrupt

    cfg = make_config("train.epochs=3", *QUIET)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, reporter=StopAtEpoch())
    (run_dir,) = (Path(cfg.log.runs_dir)).iterdir()
    assert {r["epoch"] for r in read_stats(run_dir / "stats.jsonl")} == {1, 2}
    run = kaizen.resume(run_dir)  # last.pt is from epoch 2, so epochs 3.. are trained again
    epochs = [r["epoch"] for r in records(run, "model")]
    assert epochs == [1, 2, 3]


def test_corrupt_stats_lines_are_skipped_with_their_line_number(tmp_path):
    path = tmp_path / "stats.jsonl"
    good = {"epoch": 1, "kind": "model", "grad_norm": 1.0}
    path.write_text(
        json.dumps(good) + "\n{not json\n" + json.dumps({"kind": "model"}) + "\n\n" + json.dumps(good)
    )
    warnings = []
    assert read_stats(path, warnings.append) == [good, good]
    assert warnings == [
        "stats.jsonl line 2 is corrupt and was skipped",
        "stats.jsonl line 3 is corrupt and was skipped",
    ]
    assert read_stats(tmp_path / "missing.jsonl") == []


# --- pictures ------------------------------------------------------------------------------------------------


def test_run_directory_has_the_gradient_and_activation_pictures(mlp_run):
    for name in ("gradients.png", "activations.png", "curves.png"):
        assert (mlp_run.path / name).read_bytes().startswith(PNG_SIGNATURE), name


def test_no_pictures_when_plots_are_off(make_config):
    run = kaizen.train(make_config("log.plots=false", "log.tensorboard=false"))
    assert not list(run.path.glob("*.png")) and (run.path / "stats.jsonl").is_file()


# --- TensorBoard ------------------------------------------------------------------------------------------------


def tensorboard_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    events.Reload()
    return events


def test_tensorboard_has_metrics_histograms_and_the_graph(mlp_run):
    events = tensorboard_events(mlp_run.path)
    tags = events.Tags()
    for tag in ("loss/train", "loss/val", "acc/train", "acc/val", "lr", "grad_norm/fc1", "dead/act1"):
        assert tag in tags["scalars"], tag
    assert [event.step for event in events.Scalars("loss/train")] == [1, 2, 3]
    for kind in ("weights", "biases", "gradients", "activations"):
        layer = "act1" if kind == "activations" else "fc1"
        assert f"{kind}/{layer}" in tags["histograms"]
        for statistic in ("mean", "std", "min", "max"):  # seed 000's scalars beside each histogram
            assert f"{kind}/{layer}/{statistic}" in tags["scalars"]
    assert tags["graph"]


def test_tensorboard_shows_the_first_conv_filters_and_custom_metrics(make_config):
    def val_top2(model, data) -> float:
        assert not model.training  # custom metrics are evaluated in inference mode
        top2 = model(data.x_val).topk(2, dim=1).indices
        return (top2 == data.y_val[:, None]).any(dim=1).float().mean().item()

    cfg = make_config("model.preset=simple_cnn", "model.norm=none", "log.plots=false")
    run = kaizen.train(cfg, metrics={"val_top2": val_top2})
    events = tensorboard_events(run.path)
    (image,) = events.Images("filters/conv1")[-1:]
    assert image.width > 8 * 5 and image.height > 5  # 4 filters of 5×5, enlarged, in one row
    top2 = [event.value for event in events.Scalars("custom/val_top2")]
    assert len(top2) == 2 and all(0 < value <= 1 for value in top2)
    custom = records(run, "custom")
    assert [(r["epoch"], r["name"]) for r in custom] == [(1, "val_top2"), (2, "val_top2")]
    assert custom[-1]["value"] == pytest.approx(top2[-1])


# --- kaizen inspect ---------------------------------------------------------------------------------------------


def test_inspect_reports_every_layer_of_one_batch():
    cfg = kaizen.Config().override(["model.preset=mlp", "model.hidden=[32]", "model.norm=none"])
    model = build_model(cfg.model, cfg.init, (1, 8, 8), 10)
    rows = inspect_batch(model, torch.randn(16, 1, 8, 8))
    assert [row.name for row in rows] == ["input", "flatten", "fc1", "act1", "drop1", "head"]
    assert rows[-1].shape == (16, 10) and rows[2].shape == (16, 32)
    assert sum(row.params for row in rows) == sum(p.numel() for p in model.parameters())
    assert rows[3].min >= 0 and all(row.nonfinite == 0 for row in rows)
    assert model.training  # modes restored


def test_inspect_counts_nan_and_inf(monkeypatch, capsys):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight[0, 0] = math.inf
    rows = inspect_batch(model, torch.randn(4, 1, 8, 8), train_mode=False)
    assert rows[-1].nonfinite >= 4  # unit 0 of every sample is ±inf or NaN


def test_inspect_command_prints_the_layer_table(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "inspect", "--set", "model.preset=mlp", "--batch", "8")
    assert code == 0, err
    for text in ("fc1 Linear", "act1 ReLU", "head Linear", "NaN/Inf", "one batch of 8"):
        assert text in out, text


def test_inspect_rejects_a_batch_of_zero(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "inspect", "--batch", "0")
    assert code == 2 and "--batch" in err and "Traceback" not in err
