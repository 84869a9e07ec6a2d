"""Models from config: presets, the layer-list builder, activations, norms, inits and the summary."""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from kaizen.config import InitConfig, ModelConfig
from kaizen.errors import KaizenError
from kaizen.nn import activation_modules, build_model, split_parameters, weight_parameters
from kaizen.nn.init import apply_init
from kaizen.nn.layers import create_activation, create_norm, group_count
from kaizen.nn.presets import preset_layers
from kaizen.nn.summary import render_summary, summarize
from kaizen.registry import ACTIVATIONS, INITS, NORMS, PRESETS

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
KAGGLE = ModelConfig(preset="kaggle_cnn", norm="batch", norm_position="after", dropout=0.5)


def plain(**switches) -> ModelConfig:
    """A model config without the default job's batch norm and dropout, unless the test asks for them."""
    return ModelConfig(**{"norm": "none", "dropout": 0.0, **switches})


def layers_model(layers: list, **switches) -> ModelConfig:
    return plain(preset=None, layers=layers, **switches)


def child_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


# ------------------------------------------------------------------------------------------------ presets


def test_all_presets_registered():
    expected = ["mlp", "simple_cnn", "lenet5", "conv_net", "kaggle_cnn", "vgg_small", "resnet_small"]
    assert PRESETS.names() == expected


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", PRESETS.names())
@pytest.mark.parametrize(
    "switches",
    [{}, {"norm": "batch", "norm_position": "after", "dropout": 0.3, "activation": "prelu"}],
    ids=["defaults", "switched"],
)
def test_preset_forward_gives_logits_per_class(name, shape, switches):
    model = build_model(plain(preset=name, **switches), InitConfig(), shape, 7)
    assert child_names(model)[-1] == "head"
    logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 7)
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # trainable end to end


def test_kaggle_cnn_matches_the_seed_parameter_count():
    summary = summarize(build_model(KAGGLE, None, (1, 28, 28), 10), (1, 28, 28))
    # The seed's Keras model has 601,258 (its BN ran on the wrong axis); per-channel BN gives 601,578.
    assert summary.total_params == 601_578
    assert summary.trainable_params == 598_250
    assert summary.non_trainable_params == 3_328  # BN running mean and variance, as Keras counts them
    assert abs(summary.total_params - 601_258) / 601_258 < 0.001


def test_kaggle_cnn_keeps_the_seed_layout():
    model = build_model(KAGGLE, None, (1, 28, 28), 10)
    # Norm after the activation and the pool; the last conv block's norm runs on the 1024 flat features.
    assert child_names(model)[:7] == ["conv1", "act1", "norm1", "conv2", "act2", "pool1", "norm2"]
    assert isinstance(model.norm4, nn.BatchNorm1d) and model.norm4.num_features == 1024
    assert child_names(model)[-4:] == ["act5", "norm5", "drop1", "head"]
    assert model.drop1.p == 0.5


def test_seed_shapes_are_kept_on_the_seed_input_sizes():
    simple = build_model(plain(preset="simple_cnn"), None, (1, 28, 28), 10)
    assert simple.fc1.in_features == 160 and simple.fc1.out_features == 40
    conv_net = build_model(plain(preset="conv_net"), None, (1, 28, 28), 10)
    assert conv_net.conv1.out_channels == 30 and conv_net.fc1.in_features == 30 * 12 * 12
    assert conv_net.fc1.out_features == 100
    for shape in [(1, 28, 28), (1, 32, 32)]:
        lenet = build_model(plain(preset="lenet5"), None, shape, 10)
        assert [lenet.fc1.in_features, lenet.fc1.out_features, lenet.fc2.out_features] == [400, 120, 84]
    mlp = build_model(plain(preset="mlp", activation="sigmoid"), None, (1, 28, 28), 10)
    widths = [(m.in_features, m.out_features) for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert widths == [(784, 40), (40, 20), (20, 10)]


def test_presets_adapt_to_small_images():
    specs = preset_layers("simple_cnn", plain(preset="simple_cnn"), (1, 8, 8))
    assert [spec.padding for spec in specs if spec.type == "conv"] == ["same", "same"]
    model = build_model(plain(preset="vgg_small"), None, (1, 8, 8), 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3  # 8 -> 4 -> 2 -> 1


@pytest.mark.parametrize("name", PRESETS.names())
def test_global_activation_switch_reaches_every_hidden_activation(name):
    model = build_model(plain(preset=name, activation="tanh"), None, (1, 28, 28), 10)
    activations = activation_modules(model)
    assert activations
    assert all(isinstance(module, nn.Tanh) for module in activations.values())


def test_norm_position_changes_the_order():
    before = build_model(plain(preset="simple_cnn", norm="batch"), None, (1, 28, 28), 10)
    after = build_model(
        plain(preset="simple_cnn", norm="batch", norm_position="after"), None, (1, 28, 28), 10
    )
    assert child_names(before)[:3] == ["conv1", "norm1", "act1"]
    assert child_names(after)[:3] == ["conv1", "act1", "norm1"]


def test_norm_none_adds_no_norm_children():
    model = build_model(plain(preset="lenet5"), None, (1, 28, 28), 10)
    assert not any(name.startswith("norm") for name in child_names(model))


@pytest.mark.parametrize("name", PRESETS.names())
def test_dropout_zero_leaves_no_dropout_and_positive_adds_it(name):
    without = build_model(plain(preset=name, dropout=0.0), None, (1, 28, 28), 10)
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())
    with_dropout = build_model(plain(preset=name, dropout=0.25), None, (1, 28, 28), 10)
    rates = [m.p for m in with_dropout.modules() if isinstance(m, nn.Dropout)]
    assert rates and all(rate == 0.25 for rate in rates)
    assert child_names(with_dropout)[-2].startswith("drop")  # dropout right before the classifier


def test_mlp_dropout_sits_between_dense_layers():
    model = build_model(plain(preset="mlp", hidden=[40, 20], dropout=0.5), None, (1, 28, 28), 10)
    assert child_names(model) == ["flatten", "fc1", "act1", "drop1", "fc2", "act2", "drop2", "head"]


# --------------------------------------------------------------------------------- activations and norms


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_and_runs(name):
    maps = torch.randn(2, 6, 4, 4)
    activation = create_activation(name, channels=6, slope=0.2)
    assert activation(maps).shape == maps.shape
    assert create_activation(name, channels=5)(torch.randn(3, 5)).shape == (3, 5)


def test_leaky_slope_and_prelu_channels_follow_the_switches():
    model = build_model(
        plain(preset="conv_net", activation="leaky_relu", leaky_slope=0.2), None, (1, 8, 8), 10
    )
    assert model.act1.negative_slope == 0.2
    prelu = build_model(plain(preset="conv_net", activation="prelu"), None, (1, 8, 8), 10)
    assert prelu.act1.weight.numel() == 30  # one slope per conv channel
    assert prelu.act2.weight.numel() == 100  # one per hidden unit


@pytest.mark.parametrize("kind", NORMS.names())
def test_every_norm_builds_and_runs_on_feature_maps(kind):
    maps = torch.randn(4, 12, 5, 5)
    norm = create_norm(kind, channels=12, spatial=True, groups=8)
    assert norm(maps).shape == maps.shape


@pytest.mark.parametrize("kind", [kind for kind in NORMS.names() if kind != "instance"])
def test_norms_run_on_flat_features(kind):
    features = torch.randn(4, 12)
    assert create_norm(kind, channels=12, spatial=False, groups=4)(features).shape == (4, 12)


def test_instance_norm_on_flat_features_is_a_clear_error():
    with pytest.raises(KaizenError, match="use batch, layer or group"):
        create_norm("instance", channels=12, spatial=False)
    with pytest.raises(KaizenError, match=r"preset mlp\[\d+\] \(norm\)"):
        build_model(plain(preset="mlp", norm="instance"), None, (1, 8, 8), 10)


def test_layer_norm_normalises_each_sample_over_channels_and_space():
    maps = torch.randn(3, 8, 4, 4) * 5 + 2
    out = create_norm("layer", channels=8, spatial=True)(maps)
    per_sample = out.flatten(1)
    assert torch.allclose(per_sample.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_sample.std(1, unbiased=False), torch.ones(3), atol=1e-3)


def test_group_norm_falls_back_to_a_divisor_of_the_channels():
    assert group_count(12, 8) == 6
    assert group_count(10, 8) == 5
    assert group_count(7, 8) == 7
    assert group_count(32, 8) == 8
    norm = create_norm("group", channels=12, spatial=True, groups=8)
    assert norm.num_groups == 6


def test_instance_norm_is_affine():
    assert create_norm("instance", channels=4, spatial=True).weight.numel() == 4


# ------------------------------------------------------------------------------------ layer-list builder


def test_layer_list_builds_named_children_and_appends_the_classifier():
    config = layers_model(
        [
            {"type": "conv", "filters": 8, "padding": "same", "activation": "relu"},
            {"type": "norm", "kind": "batch"},
            {"type": "pool", "kind": "avg"},
            {"type": "residual", "filters": 16, "stride": 2},
            {"type": "conv_transpose", "filters": 4},
            {"type": "dropout"},
            {"type": "conv", "filters": 6, "kernel": 3, "stride": 2, "padding": "same"},
            {"type": "activation", "name": "gelu"},
            {"type": "pool", "kind": "lp", "size": 2},
        ],
        dropout=0.1,
    )
    model = build_model(config, None, (1, 16, 16), 5)
    assert child_names(model) == [
        "conv1", "act1", "norm1", "pool1", "res1", "deconv1", "drop1", "conv2", "act2", "pool2", "flatten", "head",
    ]  # fmt: skip
    assert model.drop1.p == 0.1  # rate None -> model.dropout
    assert isinstance(model.act2, nn.GELU)
    # 16 -> pool 8 -> residual/2 4 -> deconv 8 -> conv/2 'same' 4 -> pool 2: 6 channels × 2 × 2 = 24
    assert model.head.in_features == 24
    assert model(torch.randn(3, 1, 16, 16)).shape == (3, 5)


def test_global_pool_feeds_the_head_without_flatten():
    config = layers_model([{"type": "conv", "filters": 8}, {"type": "global_pool", "kind": "max"}, "dropout"])
    model = build_model(config, None, (3, 10, 10), 4)
    assert child_names(model) == ["conv1", "gpool", "head"]  # model.dropout is 0: no dropout child
    assert model.head.in_features == 8
    assert model(torch.randn(2, 3, 10, 10)).shape == (2, 4)


def test_layer_list_defaults_come_from_the_model_switches():
    config = layers_model(
        ["flatten", {"type": "dense", "units": 16}, "norm", "activation", "dropout"],
        norm="layer",
        activation="elu",
        dropout=0.3,
    )
    model = build_model(config, None, (1, 4, 4), 3)
    assert isinstance(model.norm1, nn.LayerNorm)
    assert isinstance(model.act1, nn.ELU)
    assert model.drop1.p == 0.3


def test_residual_block_projects_only_when_the_shape_changes():
    config = layers_model(
        [{"type": "residual", "filters": 4}, {"type": "residual", "filters": 8, "stride": 2}], norm="batch"
    )
    model = build_model(config, None, (4, 8, 8), 2)
    assert isinstance(model.res1.shortcut, nn.Identity)
    assert isinstance(model.res2.shortcut.conv, nn.Conv2d)
    assert isinstance(model.res2.shortcut.norm, nn.BatchNorm2d)
    assert model(torch.randn(2, 4, 8, 8)).shape == (2, 2)


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (["pool", "pool", "pool", "pool"], r"model.layers\[3\] \(pool\) on input 1×1×1"),
        (["flatten", {"type": "conv", "filters": 4}], r"model.layers\[1\] \(conv\) on input 64 features"),
        ([{"type": "dense", "units": 4}], r"model.layers\[0\] \(dense\) on input 1×8×8"),
        ([{"type": "conv", "filters": 4, "kernel": 9}], r"model.layers\[0\] \(conv\).*padding: same"),
        (["flatten", {"type": "residual", "filters": 4}], r"model.layers\[1\] \(residual\)"),
        (
            [{"type": "conv_transpose", "filters": 4, "output_padding": 2}],
            r"\(conv_transpose\).*output_padding",
        ),
        (["flatten", {"type": "norm", "kind": "instance"}], r"model.layers\[1\] \(norm\)"),
    ],
)
def test_shape_errors_name_the_layer_and_the_shape(layers, match):
    with pytest.raises(KaizenError, match=match):
        build_model(layers_model(layers), None, (1, 8, 8), 10)


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(KaizenError, match="channels, height, width"):
        build_model(plain(preset="mlp"), None, (28, 28), 10)


# ------------------------------------------------------------------------------------------------- inits


def init_linear(weights: str, fan_in: int = 1000, fan_out: int = 800, **kwargs) -> nn.Linear:
    torch.manual_seed(0)
    return apply_init(nn.Linear(fan_in, fan_out), InitConfig(weights=weights, **kwargs))


@pytest.mark.parametrize(
    ("weights", "expected_std"),
    [
        ("he_normal", math.sqrt(2 / 1000)),
        ("he_uniform", math.sqrt(2 / 1000)),
        ("xavier_normal", math.sqrt(2 / 1800)),
        ("xavier_uniform", math.sqrt(2 / 1800)),
        ("lecun_normal", math.sqrt(1 / 1000)),
        ("normal", 0.01),
    ],
)
def test_init_gives_the_expected_spread(weights, expected_std):
    weight = init_linear(weights).weight
    assert abs(weight.std().item() - expected_std) / expected_std < 0.1
    assert abs(weight.mean().item()) < 0.1 * expected_std


def test_normal_init_uses_init_std():
    assert abs(init_linear("normal", std=0.05).weight.std().item() - 0.05) < 0.005


def test_he_normal_on_conv_uses_fan_in_of_channels_times_kernel():
    torch.manual_seed(0)
    conv = apply_init(nn.Conv2d(64, 128, 3), InitConfig(weights="he_normal"))
    expected = math.sqrt(2 / (64 * 9))
    assert abs(conv.weight.std().item() - expected) / expected < 0.1


def test_zeros_init_zeroes_every_weight():
    model = build_model(plain(preset="lenet5"), InitConfig(weights="zeros"), (1, 28, 28), 10)
    assert all(torch.count_nonzero(weight) == 0 for weight in weight_parameters(model))


def test_orthogonal_init_gives_orthonormal_rows():
    weight = init_linear("orthogonal", fan_in=512, fan_out=256).weight
    assert torch.allclose(weight @ weight.T, torch.eye(256), atol=1e-4)


def test_default_init_keeps_pytorch_initialisation():
    torch.manual_seed(0)
    untouched = nn.Linear(30, 20)
    assert torch.equal(init_linear("default", fan_in=30, fan_out=20).weight, untouched.weight)


def test_bias_constant_touches_dense_and_conv_only():
    model = build_model(
        plain(preset="kaggle_cnn", norm="batch"),
        InitConfig(weights="xavier_uniform", bias=0.1),
        (1, 28, 28),
        10,
    )
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            assert torch.all(module.bias == 0.1)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_every_init_is_registered_and_applies():
    model = build_model(plain(preset="resnet_small", norm="batch"), None, (1, 8, 8), 10)
    for name in INITS.names():
        apply_init(model, InitConfig(weights=name))
        assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------- views of a model


def test_activation_modules_lists_named_activations_in_order():
    model = build_model(plain(preset="resnet_small"), None, (1, 8, 8), 10)
    names = list(activation_modules(model))
    assert names[:3] == ["act1", "res1.act1", "res1.act2"]
    assert len(names) == 7


def test_split_parameters_separates_weights_from_biases_and_norms():
    model = build_model(KAGGLE, None, (1, 28, 28), 10)
    weights, others = split_parameters(model)
    assert {id(p) for p in weights} == {
        id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    }
    assert all(p.dim() == 1 for p in others)  # biases and norm scales/shifts
    assert len(weights) + len(others) == len(list(model.parameters()))


# ----------------------------------------------------------------------------------------------- summary


def test_summary_macs_of_a_single_linear_layer():
    summary = summarize(nn.Linear(784, 10), (784,))
    assert summary.macs == 7840
    assert summary.total_params == 7850
    assert summary.rows[0].output_shape == (10,)


def test_summary_macs_of_convs_are_hand_computed():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2, stride=2))
    summary = summarize(model, (3, 10, 10))
    conv = 8 * 10 * 10 * (3 * 3 * 3)  # outputs × (inputs per output)
    deconv = 8 * 10 * 10 * (4 * 2 * 2)  # inputs × (outputs each input reaches)
    assert [row.macs for row in summary.rows] == [conv, 0, deconv]
    assert summary.rows[2].output_shape == (4, 20, 20)


def test_summary_counts_frozen_params_as_non_trainable_and_keeps_modes():
    model = build_model(KAGGLE, None, (1, 28, 28), 10)
    for param in model.conv1.parameters():
        param.requires_grad_(False)
    model.train()
    summary = summarize(model, (1, 28, 28))
    assert summary.non_trainable_params == 3_328 + 320
    assert model.training and model.norm1.training  # summary runs in eval mode, then restores
    row = next(row for row in summary.rows if row.name == "norm1")
    assert (row.params, row.trainable, row.output_shape) == (128, 64, (32, 26, 26))


def test_summary_macs_include_nested_layers():
    model = build_model(plain(preset="resnet_small"), None, (1, 8, 8), 10)
    summary = summarize(model, (1, 8, 8))
    res1 = next(row for row in summary.rows if row.name == "res1")
    assert res1.macs == 2 * 16 * 8 * 8 * (16 * 9)
    assert summary.macs == sum(row.macs for row in summary.rows)


def test_render_summary_is_a_keras_like_table():
    table = render_summary(summarize(build_model(KAGGLE, None, (1, 28, 28), 10), (1, 28, 28)))
    assert isinstance(table, Table)
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "conv1 (Conv2d)" in text and "(N, 32, 26, 26)" in text
    assert "Total params: 601,578" in text and "Non-trainable params: 3,328" in text
    assert "MACs per sample" in text
