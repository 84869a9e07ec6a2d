"""Transfer learning and fine-tuning (seed 000): load weights by name pattern, train only the last layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from sklearn.datasets import load_digits
from test_cli import TINY_SETS, assert_one_line_error, cli

import kaizen
from kaizen.config import TransferConfig
from kaizen.nn import build_model
from kaizen.training.optim import build_optimizer
from kaizen.training.transfer import FineTune, lr_multiplier, matches

QUIET = ["log.tensorboard=false", "log.stats=false"]
TWO_HIDDEN = ["model.hidden=[32, 16]"]


def train(runs_dir: Path, *overrides: str) -> kaizen.Run:
    return kaizen.train(tiny_config(runs_dir, *QUIET, *overrides))


def weights(run: kaizen.Run) -> dict[str, torch.Tensor]:
    return run.checkpoint()["model"]


def write_digits(folder: Path) -> dict[str, Path]:
    """NPZ files from scikit-learn's digits: all of 0-4; 100 of each of 5-9 to train on, the rest of 5-9 to test.

    Labels 5-9 are written as text, so the fine-tuning data has 5 classes named '5'..'9'.
    """
    digits = load_digits()
    x, y = (digits.images / 16).astype(np.float32)[:, None], digits.target
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.permutation(np.flatnonzero(y == label))[:100] for label in range(5, 10)])
    test = np.setdiff1d(np.flatnonzero(y >= 5), train)
    paths = {name: folder / f"{name}.npz" for name in ("low", "high_train", "high_test")}
    np.savez(paths["low"], x=x[y < 5], y=y[y < 5])
    np.savez(paths["high_train"], x=x[train], y=y[train].astype(str))
    np.savez(paths["high_test"], x=x[test], y=y[test].astype(str))
    return paths


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_digits(tmp_path_factory.mktemp("digits-npz"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> kaizen.Run:
    """The run to transfer from: an MLP 64-32-16-10 with batch norm on all ten digits."""
    return train(tmp_path_factory.mktemp("source") / "runs", *TWO_HIDDEN, "train.epochs=3")


# --- the scenario -------------------------------------------------------------------------------------

# A small CNN: two conv blocks (the trunk), then the classifier head: dense 128 + batch norm, and `head`.
CNN = {
    "preset": None,
    "layers": [
        {"type": "conv", "filters": 32, "padding": "same"},
        "norm",
        "activation",
        "pool",
        {"type": "conv", "filters": 64, "padding": "same"},
        "norm",
        "activation",
        "pool",
        "flatten",
        {"type": "dense", "units": 128},
        "norm",
        "activation",
        "dropout",
    ],
}


def test_pretrained_trunk_beats_training_from_scratch_on_500_examples(tmp_path: Path, digits_files):
    """Pretrain on digits 0-4; on 5-9 with 100 labelled examples per class, train only the classifier head
    (fc1, norm3, head) on the frozen conv trunk. After the same 5 epochs at the same learning rate it is more
    accurate than the same network trained from scratch on the same 500 examples (mean of 3 seeds)."""
    base = kaizen.Config.from_dict({"model": CNN}).override(
        [
            "train.device=cpu",
            "log.plots=false",
            f"log.runs_dir={tmp_path}",
            "data.name=npz",
            "data.val_split=0",
            *QUIET,
        ]
    )
    target = [
        f"data.path={digits_files['high_train']}",
        f"data.test_path={digits_files['high_test']}",
        "train.epochs=5",
    ]
    transferred, scratch = [], []
    for seed in range(3):
        pretrained = kaizen.train(
            base.override([f"data.path={digits_files['low']}", "train.epochs=20", f"train.seed={seed}"])
        )
        assert pretrained.summary["test"]["acc"] > 0.97
        tuned = kaizen.train(
            base.override(
                [
                    *target,
                    f"train.seed={seed}",
                    f"transfer.init_from={pretrained.path}",
                    "transfer.init_load=[conv*, norm1, norm2]",
                    "transfer.train_only=[fc1, norm3, head]",
                ]
            )
        )
        assert tuned.summary["data"]["train"] == 500
        assert tuned.summary["transfer"]["loaded"][:2] == ["conv1.weight", "conv1.bias"]
        transferred.append(tuned.summary["test"]["acc"])
        scratch.append(kaizen.train(base.override([*target, f"train.seed={seed}"])).summary["test"]["acc"])
    assert np.mean(transferred) > np.mean(scratch), (transferred, scratch)


# --- loading by pattern --------------------------------------------------------------------------------


def test_patterns_match_names_and_their_modules():
    assert (
        matches("fc1.weight", "fc1")
        and matches("res2.conv1.weight", "res2")
        and matches("norm1.bias", "norm*")
    )
    assert not matches("fc12.weight", "fc1") and not matches("head.weight", "fc*")


def test_init_load_copies_only_matching_weights_and_reports(source: kaizen.Run, tmp_path: Path):
    run = train(
        tmp_path,
        *TWO_HIDDEN,
        f"transfer.init_from={source.path}",
        "transfer.init_load=[fc1, norm1]",
        "train.epochs=1",
        "optim.lr=1e-9",
    )
    report = run.summary["transfer"]
    assert report["source"] == f"{source.path} (best.pt)"
    assert report["loaded"] == [
        "fc1.weight",
        "fc1.bias",
        "norm1.weight",
        "norm1.bias",
        "norm1.running_mean",
        "norm1.running_var",
        "norm1.num_batches_tracked",
    ]
    assert "head.weight" in report["not_selected"] and "fc2.weight" in report["kept"]
    before, after = weights(source), weights(run)
    assert torch.allclose(before["fc1.weight"], after["fc1.weight"], atol=1e-6)
    assert not torch.allclose(before["fc2.weight"], after["fc2.weight"])


def test_shape_mismatches_are_skipped_and_reported(source: kaizen.Run, tmp_path: Path, digits_files):
    """Five classes instead of ten: the head does not fit, everything else loads."""
    run = train(
        tmp_path,
        *TWO_HIDDEN,
        "data.name=npz",
        f"data.path={digits_files['high_train']}",
        f"transfer.init_from={source.path}",
        "train.epochs=1",
    )
    report = run.summary["transfer"]
    assert report["mismatched"] == {
        "head.weight": {"there": [10, 16], "here": [5, 16]},
        "head.bias": {"there": [10], "here": [5]},
    }
    assert "fc2.weight" in report["loaded"] and report["kept"] == ["head.weight", "head.bias"]


# --- what trains ---------------------------------------------------------------------------------------


def test_train_only_freezes_the_rest_and_their_batch_norm_statistics(source: kaizen.Run, tmp_path: Path):
    run = train(tmp_path, *TWO_HIDDEN, f"transfer.init_from={source.path}", "transfer.train_only=[head]")
    before, after = weights(source), weights(run)
    for name in ("fc1.weight", "fc2.bias", "norm1.weight", "norm1.running_mean", "norm2.running_var"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert run.summary["params"]["trainable"] == 16 * 10 + 10


def test_gradual_unfreezing_goes_from_the_head_backwards(source: kaizen.Run, tmp_path: Path):
    """Epoch 1 trains the head, epoch 2 also the fc2 block; fc1 would follow in epoch 3."""
    run = train(
        tmp_path,
        *TWO_HIDDEN,
        f"transfer.init_from={source.path}",
        "transfer.train_only=[head]",
        "transfer.unfreeze_every=1",
        "train.epochs=2",
    )
    before, after = weights(source), weights(run)
    assert torch.equal(before["fc1.weight"], after["fc1.weight"])
    assert torch.equal(before["norm1.running_mean"], after["norm1.running_mean"])
    assert not torch.equal(before["fc2.weight"], after["fc2.weight"])
    assert not torch.equal(before["norm2.running_mean"], after["norm2.running_mean"])  # unfrozen: it trains

    model = build_model(source.config.model, None, (1, 8, 8), 10)
    by_hand = FineTune(
        model, TransferConfig(freeze=["fc*", "norm*"], unfreeze=[{"epoch": 3, "patterns": ["fc2"]}])
    )
    assert "fc2.weight" in by_hand.frozen_at(1) and "fc2.weight" not in by_hand.frozen_at(2)
    assert not model.fc1.weight.requires_grad and model.head.weight.requires_grad


def test_penalties_reach_the_weights_that_unfreezing_releases(source: kaizen.Run, tmp_path: Path):
    """fc2 trains from epoch 2 on: an L2 of 0.5 with SGD at 0.1 shrinks it ~10% a step, as it does the head."""

    def fc2_norm(l2: float) -> float:
        run = train(
            tmp_path / f"l2-{l2}",
            *TWO_HIDDEN,
            f"transfer.init_from={source.path}",
            "transfer.train_only=[head]",
            "transfer.unfreeze_every=1",
            "optim.name=sgd",
            "optim.lr=0.1",
            f"reg.l2={l2}",
        )
        return weights(run)["fc2.weight"].norm().item()

    assert fc2_norm(0.5) < 0.5 * fc2_norm(0.0)


def test_discriminative_learning_rates(source: kaizen.Run):
    model = build_model(source.config.model, None, (1, 8, 8), 10)
    cfg = TransferConfig(lr_groups={"fc1": 0.01, "fc2": 0.1})
    FineTune(model, cfg)  # checks the patterns
    optimizer = build_optimizer(model, source.config.optim, lr_multiplier(cfg))
    lr = source.config.optim.lr
    rates = {id(param): group["lr"] for group in optimizer.param_groups for param in group["params"]}
    assert rates[id(model.fc1.weight)] == pytest.approx(lr * 0.01)
    assert rates[id(model.fc2.bias)] == pytest.approx(lr * 0.1)
    assert rates[id(model.head.weight)] == pytest.approx(lr)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)  # the rate metrics.csv reports


# --- bad input -----------------------------------------------------------------------------------------


def test_init_from_another_architecture_is_one_line(source: kaizen.Run, tmp_path, monkeypatch, capsys):
    cnn = kaizen.Config.from_dict({"model": CNN}).override(
        ["train.epochs=1", "train.device=cpu", "log.plots=false", f"log.runs_dir={tmp_path / 'cnn'}", *QUIET]
    )
    other = kaizen.train(cnn)  # its norm1 (32 channels) fits the MLP's norm1 by chance; nothing else does
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        "--set",
        f"log.runs_dir={tmp_path}",
        "--set",
        f"transfer.init_from={other.path}",
    )
    assert_one_line_error(code, err, "transfer.init_from", "nothing of", "another architecture", "conv1")


@pytest.mark.parametrize(
    "key, value",
    [
        ("transfer.freeze", "[conv9]"),
        ("transfer.train_only", "[fc1, tail*]"),
        ("transfer.init_load", "[conv*]"),
    ],
)
def test_a_pattern_that_matches_nothing_is_one_line(source, key, value, tmp_path, monkeypatch, capsys):
    pattern = value.strip("[]").split(", ")[-1]
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        "--set",
        f"log.runs_dir={tmp_path}",
        "--set",
        f"transfer.init_from={source.path}",
        "--set",
        f"{key}={value}",
    )
    assert_one_line_error(code, err, key, f"'{pattern}' matches no parameter", "fc1, norm1")
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_strict_refuses_a_mismatch_and_missing_source_is_one_line(
    source, tmp_path, digits_files, monkeypatch, capsys
):
    five = [
        "--set",
        "data.name=npz",
        "--set",
        f"data.path={digits_files['high_train']}",
        "--set",
        "model.hidden=[32,16]",
    ]
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        *five,
        "--set",
        f"log.runs_dir={tmp_path}",
        "--set",
        f"transfer.init_from={source.path}",
        "--set",
        "transfer.strict=true",
    )
    assert_one_line_error(code, err, "transfer.strict", "head.weight")
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        "--set",
        f"log.runs_dir={tmp_path}",
        "--set",
        f"transfer.init_from={tmp_path / 'nope'}",
    )
    assert_one_line_error(code, err, "transfer.init_from", "nope")
