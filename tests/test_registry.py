"""Every registry entry is complete and used, and a technique is added in one place: its registry entry.

The walk checks each entry's traits and that the code which needs a trait sees it (the statistics recorder an
activation, the preview and the batch an augmentation, ...). Mish, NAdam and a brightness/contrast jitter are
then registered here, in the test, and trained end to end without touching anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from torch import nn

import kaizen
from kaizen import registry
from kaizen.config import AugmentConfig, Config, OptimConfig, ScheduleConfig, valid_keys
from kaizen.data import load_data
from kaizen.data.augment import Augment, active_ops, for_test_time, preview
from kaizen.doctor import recommend
from kaizen.nn import build_model
from kaizen.registry import ACTIVATIONS, AUGMENTATIONS, OPTIMIZERS, SCHEDULES, Param
from kaizen.track.rundir import read_metrics
from kaizen.training.loop import fit
from kaizen.training.optim import build_optimizer, calmer_lr
from kaizen.training.schedule import LRSchedule

QUIET = ["log.tensorboard=false", "train.epochs=1"]
ALL = [table for table in vars(registry).values() if isinstance(table, registry.Registry)]


@pytest.fixture
def restore_registries():
    """Let a test register entries; the tables are as before afterwards."""
    for table in ALL:
        table.names()  # filled before the copy
    saved = [(table, dict(table._builders), dict(table._traits)) for table in ALL]
    yield
    for table, builders, traits in saved:
        table._builders, table._traits = builders, traits


def activation_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "stats.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == "activation"]


def test_every_entry_gives_its_tables_required_traits():
    for table in ALL:
        for name in table.names():
            assert isinstance(table.traits(name), table.traits_type), (table.family, name)
    with pytest.raises(TypeError, match="activation 'x' is registered without saturation"):
        ACTIVATIONS.register("x", family="relu")


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_is_seen_by_the_statistics_recorder(name, tmp_path):
    traits = ACTIVATIONS.traits(name)
    assert traits.family in ("relu", "squashing", "smooth")
    assert (traits.saturation is not None) == (traits.family == "squashing")
    run = kaizen.train(tiny_config(tmp_path, *QUIET, f"model.activation={name}"))
    records = activation_records(run.path)
    assert records and all(record["type"] == type(ACTIVATIONS.create(name)).__name__ for record in records)
    for record in records:  # dead units for the relu family, saturation for squashing ones
        assert (record["dead"] is not None) == (traits.family == "relu")
        assert (record["saturated"] is not None) == (traits.family == "squashing")


def loss_after_steps(optim: OptimConfig, steps: int = 60) -> tuple[float, float]:
    """(first, last) loss of the tiny MLP trained `steps` times on one batch of digits."""
    torch.manual_seed(0)
    data = load_data(Config().data)
    x, y = data.x_train[:128], data.y_train[:128]
    model = build_model(tiny_config(Path(".")).model, None, data.input_shape, data.num_classes)
    optimizer = build_optimizer(model, optim)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimiser_has_a_family_and_a_usual_rate_that_trains(name):
    traits = OPTIMIZERS.traits(name)
    assert traits.family in ("sgd", "adaptive")
    first, last = loss_after_steps(OptimConfig(name=name, lr=traits.usual_lr))
    assert last < 0.6 * first  # measured: 0.41 of the first loss for adam/adamw, 0.03 to 0.15 for the others
    # the divergence advice of the loop and the doctor: never above the usual rate
    assert calmer_lr(OptimConfig(name=name, lr=100.0)) == traits.usual_lr
    assert (name in recommend.SGD_FAMILY) == (traits.family == "sgd")


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_shape_is_what_its_traits_say(name):
    traits = SCHEDULES.traits(name)
    epochs, steps = 4, 5
    cfg = ScheduleConfig(name=name, cycles=2, step_epochs=1, patience=0)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = LRSchedule(optimizer, cfg, epochs, steps)
    rates, cycles = [], []
    for epoch in range(epochs):
        for _ in range(steps):
            rates.append(schedule.current_lr())
            schedule.step()
        schedule.end_epoch(val_loss=1.0)  # never improves after the first epoch
        cycles.append(schedule.cycle_ended(epoch + 1))
    assert all(0 <= rate <= 1.0 for rate in rates)
    assert (cycles == [None, 1, None, 2]) == traits.cycles
    assert (traits.on_plateau and rates[-1] < rates[0]) == traits.on_plateau
    if traits.decay is not None:  # the shape decays by its default factor
        assert 0 < traits.decay <= 1 and rates[-1] < rates[0]


def switched_on(cfg: AugmentConfig, name: str) -> AugmentConfig:
    """`cfg` with the first field of op `name` switched on."""
    field = next(iter(AUGMENTATIONS.traits(name).fields))
    return cfg.model_copy(update={field: True if isinstance(getattr(cfg, field), bool) else 0.3})


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_augmentation_is_applied_previewed_and_kept_at_test_time_if_safe(name):
    traits = AUGMENTATIONS.traits(name)
    assert traits.stage in ("warp", "pixels", "mix")
    cfg = switched_on(AugmentConfig(), name)
    assert active_ops(cfg) == [name]
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    assert not torch.equal(Augment(cfg)(x, torch.arange(16) % 10).x, x)  # applied
    shown = preview(Config(augment=cfg), images=2, copies=2)
    assert next(iter(traits.fields)) in shown.settings
    if traits.test_time:
        assert for_test_time(cfg).ops == [name]
    else:
        with pytest.raises(kaizen.KaizenError, match="test-time augmentation"):
            for_test_time(cfg)
    assert not recommend_augmentation(Config(augment=cfg))


def recommend_augmentation(cfg: Config) -> bool:
    """Whether the doctor, seeing overfitting, would suggest switching augmentation on."""
    from kaizen.doctor.detectors import _augmentation_off

    return _augmentation_off(cfg)


# ------------------------------------------------------------------------- a technique in one place


def test_mish_is_one_registry_entry(restore_registries, tmp_path):
    ACTIVATIONS.register("mish", family="smooth", saturation=None)(lambda **_: nn.Mish())
    run = kaizen.train(tiny_config(tmp_path, *QUIET, "model.activation=mish", "reg.activation_sparsity=0.01"))
    records = activation_records(run.path)
    assert [record["type"] for record in records] == ["Mish"]  # the statistics recorder sees it
    assert run.summary["test"]["acc"] > 0.3  # ten classes: chance is 0.1; measured 0.41 after one epoch


def test_nadam_is_one_registry_entry(restore_registries, tmp_path):
    @OPTIMIZERS.register("nadam", family="adaptive", usual_lr=2e-3)
    def _nadam(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
        return torch.optim.NAdam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)

    run = kaizen.train(tiny_config(tmp_path, *QUIET, "optim.name=nadam", "optim.lr=2e-3", "train.epochs=2"))
    assert run.summary["test"]["acc"] > 0.5
    assert recommend.safe_lr(run.config.override(["optim.lr=1"])) == "optim.lr=0.002"  # its usual rate


def test_a_brightness_contrast_jitter_is_one_registry_entry_with_its_settings(restore_registries, tmp_path):
    # the entry alone: its settings (with defaults and bounds) become augment.brightness / augment.contrast
    @AUGMENTATIONS.register(
        "jitter",
        fields={
            "brightness": Param(0.0, "random shift of the mean, +-this", ge=0),
            "contrast": Param(0.0, "random scale of the contrast, 1 +-this", ge=0, lt=1),
        },
        settings={},
        stage="pixels",
        test_time=False,
    )
    def _jitter(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
        n = len(x)
        scale = 1 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * cfg.contrast
        shift = (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * cfg.brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * scale + mean + shift

    cfg = tiny_config(tmp_path, *QUIET, "train.epochs=2", "augment.brightness=0.3", "augment.contrast=0.3")
    assert "brightness: 0.3" in cfg.to_yaml() and "augment.contrast" in valid_keys()
    with pytest.raises(kaizen.KaizenError, match="contrast = 2"):  # its bounds are the config's
        cfg.override(["augment.contrast=2"])
    assert Augment(cfg.augment).ops == ["jitter"]
    assert "brightness 0.3, contrast 0.3" in preview(cfg, images=2, copies=2).settings
    rows = read_metrics(fit(cfg) / "metrics.csv")
    assert max(row["acc"] for row in rows if row["split"] == "val") > 0.5
    assert not recommend_augmentation(cfg)
