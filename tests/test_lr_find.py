"""kaizen lr-find: the range test on a tiny real model suggests a usable rate, draws its curve, and says so when
the loss is NaN from the first step."""

from __future__ import annotations

from conftest import cli

import kaizen
from kaizen.doctor.lr_find import range_test

MLP = ["model.preset=mlp", "model.hidden=[64]", "model.norm=none", "model.dropout=0"]


def test_the_range_test_stops_on_blow_up_and_suggests_a_rate_that_trains(tmp_path):
    cfg = kaizen.Config().override([*MLP, "optim.name=adam"])
    result = range_test(cfg)
    assert result.lrs == sorted(result.lrs) and result.lrs[-1] < 10  # stopped before the end of the sweep
    assert "smoothed loss" in result.stopped or "not finite" in result.stopped
    assert 1e-4 <= result.suggestion <= 1e-1
    run = kaizen.train(
        cfg.override(
            [f"optim.lr={result.suggestion}", "train.epochs=5", f"log.runs_dir={tmp_path}", "log.plots=false"]
        )
    )
    assert run.summary["best"]["val_acc"] > 0.9


def test_lr_find_command_draws_the_curve_and_apply_prints_the_override(monkeypatch, capsys, tmp_path):
    png = tmp_path / "curve.png"
    sets = [f"--set={override}" for override in MLP]
    code, out, err = cli(monkeypatch, capsys, "lr-find", *sets, "--plot", str(png))
    assert code == 0, err
    assert png.stat().st_size > 1000 and "valley rule" in out and "steepest-slope rule" in out
    code, out, err = cli(monkeypatch, capsys, "lr-find", *sets, "--apply")
    (line,) = out.strip().splitlines()
    assert code == 0 and line.startswith("--set optim.lr=") and float(line.split("=")[1]) > 0


def test_lr_find_bad_input(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "lr-find", "--set", "optim.lr=-1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    nan = ["--set=init.weights=normal", "--set=init.std=1e30", *[f"--set={override}" for override in MLP]]
    code, _, err = cli(monkeypatch, capsys, "lr-find", *nan)
    assert code == 2 and "from the first step" in err
