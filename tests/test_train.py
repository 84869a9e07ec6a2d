"""Training end to end: tiny real models on the bundled digits set, checked against the claims of DESIGN.md."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import kaizen
from kaizen.config import RegConfig, ScheduleConfig
from kaizen.data import load_data, normalize
from kaizen.data.datasets import digits_dataset
from kaizen.evaluate import predict_proba
from kaizen.inference import evaluate_run, predict_file
from kaizen.nn import build_model
from kaizen.track.progress import Reporter
from kaizen.training import loop
from kaizen.training.optim import build_optimizer
from kaizen.training.regularize import Penalties
from kaizen.training.schedule import LRSchedule

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
META_KEYS = {"kaizen", "torch", "python", "device", "seed", "start", "end", "status"}


def train_rows(run: kaizen.Run, key: str) -> list[float]:
    """One metric of the train split, epoch by epoch."""
    return [row[key] for row in run.metrics() if row["split"] == "train"]


def scores(run: kaizen.Run) -> list[tuple]:
    """(epoch, split, loss, acc, lr) of every metrics row: what must match when runs are the same."""
    return [(row["epoch"], row["split"], row["loss"], row["acc"], row["lr"]) for row in run.metrics()]


def read_meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "meta.json").read_text())


def only_run(runs_dir: Path) -> Path:
    (run_dir,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    return run_dir


def weight_norm(state: dict[str, torch.Tensor]) -> float:
    """Sum of squares of the dense weights (the parameters L2 penalises) in a state dict."""
    return sum(
        float(value.pow(2).sum())
        for name, value in state.items()
        if re.fullmatch(r"(fc\d+|head)\.weight", name)
    )


class InterruptAt(Reporter):
    """A silent reporter that presses Ctrl-C at a given (1-based) epoch and step, or at an epoch's end."""

    def __init__(self, epoch: int, step: int | None = None):
        super().__init__(enabled=False)
        self.epoch, self.step_at = epoch, step

    def step(self, epoch: int, step: int, loss: float, acc: float, lr: float) -> None:
        if epoch + 1 == self.epoch and step == self.step_at:
            raise KeyboardInterrupt

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch + 1 == self.epoch and self.step_at is None:
            raise KeyboardInterrupt


def test_train_stays_a_function_once_the_training_modules_are_loaded():
    # validating optimiser and schedule names imports their modules; they must not shadow kaizen.train
    kaizen.Config().override(["optim.name=sgd", "schedule.name=step"])
    assert callable(kaizen.train) and callable(kaizen.resume)


# --- the run directory ---------------------------------------------------------------------------------


def test_run_directory_holds_the_whole_record(finished_run):
    cfg, run = finished_run
    path = run.path

    # the config, with the thread count it trained with resolved (conftest trains on one thread)
    assert kaizen.Config.load(path / "config.yaml") == cfg.override(["train.threads=1"])

    meta = read_meta(path)
    assert META_KEYS <= meta.keys()
    assert meta["status"] == "done" and meta["seed"] == cfg.train.seed and meta["device"] == "cpu"
    assert meta["kaizen"] == kaizen.__version__ and meta["torch"] == torch.__version__
    assert meta["start"] <= meta["end"]

    with open(path / "metrics.csv", newline="") as file:
        header = next(csv.reader(file))
    assert header == ["epoch", "split", "loss", "acc", "lr", "seconds"]
    rows = run.metrics()
    assert [(row["epoch"], row["split"]) for row in rows] == [
        (epoch, split) for epoch in (1, 2, 3) for split in ("train", "val")
    ]
    assert all(0 <= row["acc"] <= 1 and row["loss"] > 0 and row["seconds"] >= 0 for row in rows)

    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 3
    assert summary["test"]["n"] == 359 and 0.5 < summary["test"]["acc"] <= 1
    assert 1 <= summary["best_epoch"] <= 3
    assert summary["checkpoint"] == "best.pt"
    best_val = min(row["loss"] for row in rows if row["split"] == "val")
    assert summary["best"]["val_loss"] == pytest.approx(best_val, rel=1e-5)

    best = torch.load(path / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(path / "checkpoints" / "last.pt", weights_only=True)
    assert best["epoch"] == summary["best_epoch"] and last["epoch"] == 3
    assert best["input_shape"] == [1, 8, 8] and best["num_classes"] == 10
    assert {"optimizer", "schedule", "monitor", "rng"} <= last.keys()

    assert (path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not list(path.rglob("*.tmp")), "a temporary file was left behind"


def test_no_curves_when_plots_are_off(make_config):
    run = kaizen.train(make_config("train.epochs=1"))
    assert not (run.path / "curves.png").exists()


def test_same_seed_same_metrics_other_seed_different(make_config):
    cfg = make_config("model.dropout=0.2")
    first, second = kaizen.train(cfg), kaizen.train(cfg)
    assert first.path != second.path
    assert scores(first) == scores(second)
    assert first.summary["test"] == second.summary["test"]

    other = kaizen.train(cfg.override(["train.seed=1"]))
    assert train_rows(other, "loss") != train_rows(first, "loss")


# --- resume -------------------------------------------------------------------------------------------


def test_resume_after_ctrl_c_mid_epoch_matches_an_uninterrupted_run(make_config, tmp_path):
    # Dropout draws from the global RNG and cosine depends on the step count: both must be restored exactly.
    cfg = make_config("train.epochs=4", "model.dropout=0.2", "schedule.name=cosine")
    uninterrupted = kaizen.train(cfg)

    cut = cfg.override([f"log.runs_dir={tmp_path / 'cut'}"])
    with pytest.raises(KeyboardInterrupt):
        loop.fit(cut, reporter=InterruptAt(epoch=3, step=8))
    run_dir = only_run(tmp_path / "cut")
    assert read_meta(run_dir)["status"] == "stopped"
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2

    resumed = kaizen.resume(run_dir)

    assert scores(resumed) == scores(uninterrupted)
    assert resumed.summary["test"] == uninterrupted.summary["test"]
    meta = read_meta(run_dir)
    assert meta["status"] == "done" and meta["resumed"][0]["from_epoch"] == 2


def test_resume_after_a_hard_crash_redoes_the_epochs_after_the_checkpoint(make_config, tmp_path):
    # checkpoint.every=2: epoch 3 is logged but not checkpointed when the process dies after it.
    cfg = make_config("train.epochs=4", "model.dropout=0.2", "schedule.name=cosine", "checkpoint.every=2")
    uninterrupted = kaizen.train(cfg)

    crashed = cfg.override([f"log.runs_dir={tmp_path / 'crashed'}"])
    with pytest.raises(KeyboardInterrupt):
        loop.fit(crashed, reporter=InterruptAt(epoch=3))
    run_dir = only_run(tmp_path / "crashed")
    meta = read_meta(run_dir)
    meta.update(status="running", end=None, error=None)  # what a killed process leaves behind
    (run_dir / "meta.json").write_text(json.dumps(meta))
    assert max(row["epoch"] for row in kaizen.load_run(run_dir).metrics()) == 3

    resumed = kaizen.resume(run_dir)

    assert scores(resumed) == scores(uninterrupted)
    assert resumed.summary["test"] == uninterrupted.summary["test"]
    assert read_meta(run_dir)["status"] == "done"


def test_extending_a_finished_run_matches_training_longer_from_the_start(make_config):
    # With a constant rate the epoch count does not change the schedule, so 2 + 2 epochs == 4 epochs.
    cfg = make_config("train.epochs=4", "model.dropout=0.2", "schedule.name=constant")
    uninterrupted = kaizen.train(cfg)
    short = kaizen.train(cfg.override(["train.epochs=2"]))

    extended = kaizen.resume(short.path, ["train.epochs=4"])

    assert extended.path == short.path
    assert scores(extended) == scores(uninterrupted)
    assert extended.summary["test"] == uninterrupted.summary["test"]
    assert kaizen.load_run(short.path).config.train.epochs == 4


def test_resuming_a_finished_run_says_how_to_train_longer(finished_run):
    _, run = finished_run
    before = {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()}
    with pytest.raises(kaizen.KaizenError, match="nothing to resume.*train.epochs"):
        kaizen.resume(run.path)
    assert {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()} == before


# --- divergence ---------------------------------------------------------------------------------------


DIVERGING = {
    # Without normalisation a huge SGD step survives epoch 1 (finite but enormous loss), then overflows.
    "train loss": ["optim.lr=1e5", "model.norm=none"],
    # With batch norm the training loss (batch statistics) stays finite while the running statistics
    # overflow: only the validation loss of epoch 2 shows the damage.
    "val loss": ["optim.lr=100", "model.norm=batch", "train.batch_size=64"],
}


@pytest.mark.parametrize("case", list(DIVERGING))
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_config, tmp_path, case):
    cfg = make_config("train.epochs=4", "optim.name=sgd", "schedule.name=constant", *DIVERGING[case])
    with pytest.raises(kaizen.KaizenError, match="diverged") as raised:
        kaizen.train(cfg)
    message = str(raised.value)
    # the rate is brought to SGD's usual 0.1, not divided by 10 (which would still diverge): the doctor's rule
    assert "--set optim.lr=0.1 " in message and "train.clip_norm=1.0" in message
    diverged_epoch = int(re.search(r"at epoch (\d+)", message).group(1))
    assert diverged_epoch >= 2

    run_dir = only_run(tmp_path / "runs")
    meta = read_meta(run_dir)
    assert meta["status"] == "failed" and "diverged" in meta["error"] and meta["end"]
    assert not (run_dir / "summary.json").exists()
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == diverged_epoch - 1
    assert all(torch.isfinite(value.float()).all() for value in last["model"].values())
    rows = kaizen.load_run(run_dir).metrics()
    assert {row["epoch"] for row in rows} == set(range(1, diverged_epoch))
    assert all(math.isfinite(row["loss"]) for row in rows), "a NaN epoch was recorded as if it were fine"


# --- early stopping -----------------------------------------------------------------------------------


def evaluate_checkpoint(run: kaizen.Run, name: str) -> tuple[float, float]:
    model, _ = run.model(name)
    data = load_data(run.config.data)
    return loop.evaluate_split(model, data.x_test, data.y_test, 512)


def test_early_stopping_ends_with_the_best_weights(make_config):
    # A wide MLP without dropout on a tenth of the data overfits within a few epochs.
    overfit = [
        "model.hidden=[256]",
        "model.dropout=0",
        "model.norm=none",
        "optim.lr=0.01",
        "schedule.name=constant",
        "data.fraction=0.1",
        "train.epochs=30",
        "early_stop.enabled=true",
        "early_stop.patience=1",
    ]
    run = kaizen.train(make_config(*overfit))
    summary = run.summary

    assert summary["stopped_early"] is True
    assert summary["epochs_completed"] < 30
    assert summary["best_epoch"] == summary["epochs_completed"] - 2  # patience 1: two epochs without a gain
    val = [row["loss"] for row in run.metrics() if row["split"] == "val"]
    assert len(val) == summary["epochs_completed"]
    assert min(val) == val[summary["best_epoch"] - 1]

    assert summary["checkpoint"] == "best.pt"
    loss, acc = evaluate_checkpoint(run, "best.pt")
    assert summary["test"]["acc"] == pytest.approx(acc, abs=1e-6)
    assert summary["test"]["loss"] == pytest.approx(loss, abs=1e-5)
    last_loss, _ = evaluate_checkpoint(run, "last.pt")
    assert last_loss != pytest.approx(loss, abs=1e-5)

    kept_last = kaizen.train(make_config(*overfit, "early_stop.restore_best=false"))
    assert kept_last.summary["checkpoint"] == "last.pt"
    assert kept_last.summary["test"]["loss"] == pytest.approx(
        evaluate_checkpoint(kept_last, "last.pt")[0], abs=1e-5
    )


# --- optimisers and schedules -------------------------------------------------------------------------

OPTIMISERS = [
    ("sgd", 0.1, torch.optim.SGD, {"momentum": 0, "nesterov": False}),
    ("momentum", 0.01, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", 0.01, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", 0.05, torch.optim.Adagrad, {}),
    ("rmsprop", 0.001, torch.optim.RMSprop, {}),
    ("adam", 0.003, torch.optim.Adam, {}),
    ("adamw", 0.003, torch.optim.AdamW, {}),
]


@pytest.mark.parametrize(("name", "lr", "kind", "group"), OPTIMISERS, ids=[row[0] for row in OPTIMISERS])
def test_each_optimiser_is_the_named_one_and_lowers_the_training_loss(make_config, name, lr, kind, group):
    cfg = make_config(f"optim.name={name}", f"optim.lr={lr}", "schedule.name=constant")
    model = build_model(cfg.model, cfg.init, (1, 8, 8), 10)
    optimizer = build_optimizer(model, cfg.optim)
    assert type(optimizer) is kind
    assert all(optimizer.param_groups[0][key] == value for key, value in group.items())

    run = kaizen.train(cfg)
    losses = train_rows(run, "loss")
    assert losses[1] < 0.8 * losses[0]
    assert train_rows(run, "lr") == [pytest.approx(lr)] * 2


LR = 0.01
SCHEDULES = {
    "constant": (["schedule.name=constant", "train.epochs=2"], [LR, LR]),
    "step": (
        ["schedule.name=step", "schedule.step_epochs=2", "schedule.gamma=0.5", "train.epochs=5"],
        [LR, LR, LR / 2, LR / 2, LR / 4],
    ),
    "exponential": (
        ["schedule.name=exponential", "schedule.gamma=0.5", "train.epochs=3"],
        [LR, LR / 2, LR / 4],
    ),
    "warmup": (["schedule.name=constant", "schedule.warmup_epochs=2", "train.epochs=3"], [LR / 2, LR, LR]),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_sets_the_rate_each_epoch_trains_with(make_config, name):
    overrides, expected = SCHEDULES[name]
    run = kaizen.train(make_config(f"optim.lr={LR}", *overrides))
    # warm-up is linear per step: the 41st of 82 warm-up steps (the last of epoch 1) runs at exactly half
    assert train_rows(run, "lr") == pytest.approx(expected, rel=1e-6)


def test_cosine_decreases_to_min_lr(make_config):
    run = kaizen.train(
        make_config(f"optim.lr={LR}", "schedule.name=cosine", "schedule.min_lr=0.001", "train.epochs=4")
    )
    rates = train_rows(run, "lr")
    assert rates[0] < LR and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(0.001, rel=0.01)


def test_onecycle_rises_then_falls(make_config):
    run = kaizen.train(make_config(f"optim.lr={LR}", "schedule.name=onecycle", "train.epochs=5"))
    rates = train_rows(run, "lr")
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1
    assert rates[0] < rates[peak] <= LR
    assert all(a > b for a, b in zip(rates[peak:], rates[peak + 1 :]))
    assert rates[-1] < LR / 100


def test_plateau_decays_after_patience_epochs_without_a_better_val_loss():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param]}], lr=1.0)
    cfg = ScheduleConfig(name="plateau", patience=1, gamma=0.5, min_lr=0.2)
    schedule = LRSchedule(optimizer, cfg, epochs=10, steps_per_epoch=5)
    rates = []
    for val_loss in [1.0, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]:
        schedule.step()
        schedule.end_epoch(val_loss)
        rates.append(schedule.current_lr())
    # improvement, improvement, stall 1 (wait), stall 2 -> x0.5, gain, stall, stall -> x0.5, ... floor 0.2
    assert rates == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2])


def test_plateau_schedule_trains(make_config):
    run = kaizen.train(make_config("schedule.name=plateau", "optim.lr=0.01"))
    assert train_rows(run, "lr") == [pytest.approx(0.01)] * 2  # two improving epochs: no decay yet


# --- regularisation -----------------------------------------------------------------------------------


def test_weight_decay_skips_biases_and_norm_parameters(make_config):
    cfg = make_config("optim.weight_decay=0.1", "optim.name=adamw")
    model = build_model(cfg.model, cfg.init, (1, 8, 8), 10)
    groups = build_optimizer(model, cfg.optim).param_groups
    decayed = {id(p) for group in groups if group["weight_decay"] > 0 for p in group["params"]}
    weights = {id(model.fc1.weight), id(model.head.weight)}
    assert decayed == weights
    others = [model.fc1.bias, model.head.bias, model.norm1.weight, model.norm1.bias]
    undecayed = {id(p) for group in groups if group["weight_decay"] == 0 for p in group["params"]}
    assert undecayed == {id(p) for p in others}
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))


def tiny_net() -> nn.Sequential:
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(2, 2), act1=nn.ReLU(), head=nn.Linear(2, 1)))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        net.fc1.bias.fill_(10.0)  # biases are not penalised: a large one must not count
        net.head.weight.copy_(torch.tensor([[0.5, -0.5]]))
        net.head.bias.fill_(-7.0)
    return net


@pytest.mark.parametrize(
    ("l1", "l2", "expected"),
    [(0.1, 0.0, 0.1 * 11), (0.0, 0.01, 0.01 * 30.5), (0.1, 0.01, 0.1 * 11 + 0.01 * 30.5)],
)
def test_l1_l2_penalties_equal_the_hand_computed_value(l1, l2, expected):
    # |w| sums to 1+2+3+4+0.5+0.5 = 11; w^2 sums to 1+4+9+16+0.25+0.25 = 30.5
    term = Penalties(tiny_net(), RegConfig(l1=l1, l2=l2)).term()
    assert float(term.detach()) == pytest.approx(expected)


def test_no_penalty_switched_on_adds_nothing():
    assert Penalties(tiny_net(), RegConfig()).term() is None


def test_activation_sparsity_term_is_mean_log_one_plus_h_squared():
    net = tiny_net()
    penalties = Penalties(net, RegConfig(activation_sparsity=0.5, sparsity_layers=["act*"]))
    x = torch.tensor([[1.0, 0.5], [-1.0, 2.0]])
    hidden = torch.relu(x @ net.fc1.weight.T + net.fc1.bias).detach()
    net(x)
    assert float(penalties.term().detach()) == pytest.approx(0.5 * float(torch.log1p(hidden**2).mean()))
    assert penalties.term() is None  # the activations of a step are used once


def test_l2_training_gives_smaller_weights(make_config):
    plain = kaizen.train(make_config("train.epochs=3", "optim.lr=0.01"))
    penalised = kaizen.train(make_config("train.epochs=3", "optim.lr=0.01", "reg.l2=0.01"))
    assert weight_norm(penalised.checkpoint("last.pt")["model"]) < 0.8 * weight_norm(
        plain.checkpoint("last.pt")["model"]
    )


def test_sparsity_pattern_matching_nothing_names_the_activation_layers(make_config, tmp_path):
    cfg = make_config("reg.activation_sparsity=0.1", "reg.sparsity_layers=[conv*]")
    with pytest.raises(kaizen.KaizenError, match=r"match no activation layer.*act1"):
        kaizen.train(cfg)
    assert not list((tmp_path / "runs").glob("*")), "a run directory was written for a bad config"


def mean_log_activation(run: kaizen.Run) -> float:
    model, _ = run.model("last.pt")
    data = load_data(run.config.data)
    seen = []
    model.act1.register_forward_hook(lambda module, inputs, output: seen.append(output))
    predict_proba(model, data.x_test)
    return float(torch.log1p(seen[0] ** 2).mean())


def test_activation_sparsity_lowers_the_penalised_statistic(make_config):
    base = ["train.epochs=3", "optim.lr=0.01"]
    plain = kaizen.train(make_config(*base))
    sparse = kaizen.train(make_config(*base, "reg.activation_sparsity=1.0", "reg.sparsity_layers=[act*]"))
    assert mean_log_activation(sparse) < 0.7 * mean_log_activation(plain)


# --- gradient clipping, label smoothing, bf16 ----------------------------------------------------------


def record_gradients(monkeypatch) -> list[tuple[float, float]]:
    """Make the loop's optimiser record (largest |gradient|, global gradient norm) just before each step."""
    seen: list[tuple[float, float]] = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        largest = max(float(g.abs().max()) for g in grads)
        seen.append((largest, float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))))

    def build(model, cfg):
        optimizer = build_optimizer(model, cfg)
        optimizer.register_step_pre_hook(hook)
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", build)
    return seen


def test_clip_value_bounds_every_gradient_element(make_config, monkeypatch):
    seen = record_gradients(monkeypatch)
    kaizen.train(make_config("train.epochs=1"))
    assert max(largest for largest, _ in seen) > 1e-3  # so the bound below is the clipping's doing

    seen.clear()
    kaizen.train(make_config("train.epochs=1", "train.clip_value=0.001"))
    assert len(seen) == 41
    assert all(largest <= 0.001 * (1 + 1e-6) for largest, _ in seen)
    assert any(largest == pytest.approx(0.001) for largest, _ in seen)


def test_clip_norm_bounds_the_global_norm_and_still_trains(make_config, monkeypatch):
    seen = record_gradients(monkeypatch)
    run = kaizen.train(make_config("train.clip_norm=0.5", "optim.lr=0.01", "schedule.name=constant"))
    assert all(norm <= 0.5 * (1 + 1e-5) for _, norm in seen)
    assert any(norm == pytest.approx(0.5, rel=1e-4) for _, norm in seen)
    losses = train_rows(run, "loss")
    assert losses[1] < 0.8 * losses[0]


def test_label_smoothing_raises_the_training_loss(make_config):
    plain = kaizen.train(make_config("train.epochs=1"))
    smoothed = kaizen.train(make_config("train.epochs=1", "reg.label_smoothing=0.2"))
    assert train_rows(smoothed, "loss")[0] > train_rows(plain, "loss")[0] + 0.02


def test_bf16_trains_to_a_similar_accuracy(make_config):
    base = ["train.epochs=5", "optim.lr=0.01"]
    full = kaizen.train(make_config(*base))
    half = kaizen.train(make_config(*base, "train.bf16=true"))
    assert train_rows(half, "loss") != train_rows(full, "loss")  # the switch really changes the arithmetic
    assert half.summary["test"]["acc"] > 0.85
    assert half.summary["test"]["acc"] == pytest.approx(full.summary["test"]["acc"], abs=0.03)


# --- using a finished run: load, predict, evaluate -----------------------------------------------------


def test_loaded_model_reproduces_the_test_accuracy(finished_run):
    _, run = finished_run
    model, state = run.model()
    assert not model.training
    data = load_data(run.config.data)
    assert state["mean"] == pytest.approx(data.mean)
    _, acc = loop.evaluate_split(model, data.x_test, data.y_test, 512)
    assert acc == pytest.approx(run.summary["test"]["acc"], abs=1e-6)


def write_kaggle_test_csv(path: Path, images: np.ndarray) -> Path:
    """Kaggle's test.csv layout: header pixel0..pixelN, one flattened image per row, no label."""
    flat = images.reshape(len(images), -1)
    lines = [",".join(f"pixel{i}" for i in range(flat.shape[1]))]
    lines += [",".join(f"{value:g}" for value in row) for row in flat]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_submission(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    table = np.array(rows[1:], dtype=np.int64)
    return rows[0], table[:, 0], table[:, 1]


@pytest.fixture(scope="module")
def digits_test_set(finished_run) -> tuple[np.ndarray, np.ndarray]:
    """The raw (unnormalised, [0, 1]) digits test images and labels of the finished run's split."""
    raw = digits_dataset(finished_run[0].data)
    return raw.test_x, raw.test_y


def test_predict_writes_a_kaggle_submission_as_accurate_as_the_run(finished_run, digits_test_set, tmp_path):
    _, run = finished_run
    images, labels = digits_test_set
    test_csv = write_kaggle_test_csv(tmp_path / "test.csv", images)

    report = predict_file([run], test_csv, tmp_path / "submission.csv")

    header, image_ids, predicted = read_submission(tmp_path / "submission.csv")
    assert header == ["ImageId", "Label"]
    assert image_ids.tolist() == list(range(1, len(images) + 1))
    assert report["images"] == len(images) and sum(report["counts"]) == len(images)
    assert (predicted == labels).mean() == pytest.approx(run.summary["test"]["acc"], abs=1e-6)


def test_predict_with_two_runs_averages_their_probabilities(
    finished_run, digits_test_set, make_config, tmp_path
):
    _, first = finished_run
    second = kaizen.train(make_config("train.epochs=3", "train.seed=7"))
    images, _ = digits_test_set
    test_csv = write_kaggle_test_csv(tmp_path / "test.csv", images)

    predict_file([first, second], test_csv, tmp_path / "submission.csv")

    probs = []
    for run in (first, second):
        model, state = run.model()
        probs.append(predict_proba(model, normalize(torch.from_numpy(images), state["mean"], state["std"])))
    expected = ((probs[0] + probs[1]) / 2).argmax(1).numpy()
    assert (expected != probs[0].argmax(1).numpy()).any(), "the runs agree everywhere: nothing is tested"
    assert read_submission(tmp_path / "submission.csv")[2].tolist() == expected.tolist()


def write_labelled_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    flat = images.reshape(len(images), -1)
    lines = ["label," + ",".join(f"pixel{i}" for i in range(flat.shape[1]))]
    lines += [f"{label}," + ",".join(f"{value:g}" for value in row) for label, row in zip(labels, flat)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_predict_refuses_to_ensemble_different_classes_or_shapes(
    finished_run, digits_test_set, make_config, tmp_path
):
    _, digits_run = finished_run
    images, labels = digits_test_set
    test_csv = write_kaggle_test_csv(tmp_path / "test.csv", images)

    low = labels < 5  # five classes, same 8x8 images
    five_csv = write_labelled_csv(tmp_path / "five.csv", images[low], labels[low])
    five = kaizen.train(make_config("data.name=csv", f"data.path={five_csv}", "train.epochs=1"))
    with pytest.raises(kaizen.KaizenError, match="num_classes 10 vs 5"):
        predict_file([digits_run, five], test_csv, tmp_path / "out.csv")

    small = images.reshape(-1, 1, 4, 2, 4, 2).mean(axis=(3, 5))  # 4x4 images, ten classes
    small_csv = write_labelled_csv(tmp_path / "small.csv", small, labels)
    four = kaizen.train(make_config("data.name=csv", f"data.path={small_csv}", "train.epochs=1"))
    with pytest.raises(kaizen.KaizenError, match=r"input_shape \[1, 8, 8\] vs \[1, 4, 4\]"):
        predict_file([digits_run, four], test_csv, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_evaluate_run_writes_figures_and_a_report_matching_the_summary(finished_run):
    _, run = finished_run
    result, paths = evaluate_run(run)
    names = {path.name for path in paths}
    assert names == {"confusion_matrix.png", "mistakes.png", "eval_test.json"}
    for name in ("confusion_matrix.png", "mistakes.png"):
        assert (run.path / name).read_bytes()[:8] == PNG_SIGNATURE
    report = json.loads((run.path / "eval_test.json").read_text())
    assert report["n"] == 359 and result.count == 359
    assert report["accuracy"] == pytest.approx(run.summary["test"]["acc"], abs=1e-6)
    assert report["loss"] == pytest.approx(run.summary["test"]["loss"], abs=1e-5)
    assert sum(entry["support"] for entry in report["per_class"].values()) == 359
    assert math.isfinite(report["macro_f1"])
