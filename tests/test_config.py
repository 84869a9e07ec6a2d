"""The config boundary: YAML, dotted overrides with coercion, and one-line errors that name the culprit."""

from pathlib import Path

import pytest

from kaizen import Config, KaizenError
from kaizen.config import valid_keys

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_digits_job():
    cfg = Config()
    assert cfg.data.name == "digits"
    assert Config.load(CONFIGS / "digits_cnn.yaml") == cfg


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    Config.load(path)


def test_override_coerces_types():
    cfg = Config().override(
        [
            "optim.lr=3e-3",
            "model.dropout=0.3",
            "train.bf16=true",
            "model.hidden=[100, 50]",
            "train.clip_norm=1",
        ]
    )
    assert cfg.optim.lr == pytest.approx(3e-3)
    assert cfg.model.dropout == 0.3
    assert cfg.train.bf16 is True
    assert cfg.model.hidden == [100, 50]
    assert cfg.train.clip_norm == 1.0


def test_override_returns_a_copy():
    base = Config()
    base.override(["optim.lr=0.5"])
    assert base.optim.lr == Config().optim.lr


def test_yaml_round_trip(tmp_path):
    cfg = Config().override(["model.preset=mlp", "optim.name=sgd", "schedule.name=cosine"])
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    assert Config.load(path) == cfg


def test_layer_list_shorthand_and_validation():
    cfg = Config.from_dict(
        {
            "model": {
                "preset": None,
                "layers": [{"type": "conv", "filters": 8}, "flatten", {"type": "dense", "units": 4}],
            }
        }
    )
    assert [layer.type for layer in cfg.model.layers] == ["conv", "flatten", "dense"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lrr=0.1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["optim.lr=-1"], "optim.lr = -1: Input should be greater than 0"),
        (["optim.lr=fast"], "optim.lr = 'fast'"),
        (["model.dropout=1"], "model.dropout = 1: Input should be less than 1"),
        (["train.batch_size=0"], "train.batch_size = 0: Input should be greater than 0"),
        (["model.preset=resnet99"], "unknown preset 'resnet99'"),
        (["model.activation=relu6"], "(did you mean 'relu'?); valid: sigmoid, tanh, relu"),
        (["optim.name=adamm"], "unknown optimiser 'adamm' (did you mean 'adam'?)"),
        (["schedule.name=cosin"], "unknown schedule 'cosin' (did you mean 'cosine'?)"),
        (["init.weights=he"], "unknown initialisation 'he'"),
        (["optim.lr"], "not of the form dotted.key=value"),
    ],
)
def test_bad_overrides_name_the_culprit(overrides, expected):
    with pytest.raises(KaizenError) as error:
        Config().override(overrides)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_key_in_yaml_names_closest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(KaizenError, match=r"unknown config key 'optim.learning_rate'"):
        Config.load(path)


def test_unknown_section_in_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optimizer:\n  lr: 0.1\n")
    with pytest.raises(KaizenError, match=r"unknown config key 'optimizer' \(did you mean 'optim'\?\)"):
        Config.load(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(KaizenError, match="is not valid YAML"):
        Config.load(path)
    with pytest.raises(KaizenError, match="config file not found"):
        Config.load(tmp_path / "absent.yaml")


def test_preset_and_layers_exclusive():
    with pytest.raises(KaizenError, match="keep one"):
        Config.from_dict({"model": {"preset": "mlp", "layers": ["flatten"]}})
    assert Config.from_dict({"model": {"layers": ["flatten"]}}).model.preset is None  # the list alone is enough


def test_valid_keys_cover_sections_and_leaves():
    keys = valid_keys()
    assert {"optim", "optim.lr", "early_stop.patience", "data.val_split"} <= set(keys)


def test_dotted_keys_of_a_nested_config():
    from kaizen.config import dotted

    flat = dotted(Config().override(["optim.lr=0.5"]).to_dict())
    assert flat["optim.lr"] == 0.5 and "optim" not in flat
    assert all(not isinstance(value, dict) for value in flat.values())
    assert dotted({"a": {"b": {}, "c": 1}, "d": [1]}) == {"a.c": 1, "d": [1]}
