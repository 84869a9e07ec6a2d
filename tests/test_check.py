"""kaizen check: a sound recipe passes every check; planted faults fail the check that names them; bad input
gets one clear line (exit 2)."""

from __future__ import annotations

import numpy as np
from conftest import cli

import kaizen
from kaizen.data import load_data
from kaizen.doctor.check import RecipeContext, passed, run_checks
from kaizen.doctor.findings import kind_table

MLP = ["model.preset=mlp", "model.hidden=[64]", "model.norm=none", "model.dropout=0"]


def by_name(checks) -> dict:
    return {check.title: check for check in checks}


def check(code: str, cfg: kaizen.Config, data=None):
    """The finding of the registered recipe check `code` on `cfg` (and its data, loaded unless given)."""
    return kind_table("recipe")[code]().run(
        RecipeContext(cfg, data if data is not None else load_data(cfg.data))
    )


def test_a_sound_recipe_passes_every_check():
    checks = run_checks(kaizen.Config().override(MLP))
    assert [c.title for c in checks if not passed(c)] == [], [c.evidence for c in checks]
    assert len(checks) == 8 and all(c.explanation == "" for c in checks)


def test_raw_pixels_fail_the_input_scale_and_initial_loss_checks(tmp_path):
    digits = load_data(kaizen.Config().data.model_copy(update={"normalize": False}))
    path = tmp_path / "raw.npz"
    np.savez(path, x=(digits.x_train.numpy() * 255).astype(np.float32), y=digits.y_train.numpy())
    cfg = kaizen.Config().override([*MLP, "data.name=npz", f"data.path={path}", "data.normalize=false"])
    data = load_data(cfg.data)
    scale = check("input_scale", cfg, data)
    assert not passed(scale) and "data.normalize=true" in scale.explanation
    loss = check("initial_loss", cfg, data)
    assert not passed(loss) and "confidently wrong" in loss.explanation


def test_a_learning_rate_far_too_high_fails_the_one_batch_check():
    cfg = kaizen.Config().override([*MLP, "optim.name=sgd", "optim.lr=50"])
    result = check("one_batch", cfg)
    assert not passed(result) and "lr-find" in result.explanation


def test_a_recipe_that_does_not_learn_carries_fixes_and_leaves_the_controls_unjudged():
    # at a rate far below Adam's usual one nothing is learned in the controls' steps: the failure names the
    # knob to move back first, and the zero-input / shuffled-label controls (whose random features would decide)
    # are not judged
    cfg = kaizen.Config().override([*MLP, "optim.lr=0.00001"])
    results = {r.title: r for r in check("controls", cfg)}
    learns = results["real data learns"]
    assert not passed(learns) and learns.recommendations[0] == "optim.lr=0.001"
    for name in ("zero-input control", "shuffled-label control"):
        assert results[name].severity == "info" and "not judged" in results[name].evidence


def test_test_images_copied_into_training_are_found(tmp_path):
    cfg = kaizen.Config()
    data = load_data(cfg.data)
    assert passed(check("train_test_overlap", cfg, data))
    data.pixels["test"][:20] = data.pixels["train"][:20]  # the stored images, before normalisation
    leaked = check("train_test_overlap", cfg, data)
    assert not passed(leaked) and leaked.evidence.startswith("20 of")


def test_check_command_exit_codes(monkeypatch, capsys):
    code, out, err = cli(
        monkeypatch,
        capsys,
        "check",
        *[f"--set={o}" for o in MLP],
        "--set=optim.lr=50",
        "--set=optim.name=sgd",
    )
    assert code == 1, err
    assert "FAIL one batch overfits" in out and "checks passed; failed:" in out
    code, _, err = cli(monkeypatch, capsys, "check", "--set", "optim.lr=-1")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
