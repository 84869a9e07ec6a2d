"""Export (seed 002, "save a model to use elsewhere"): an ONNX file that onnxruntime runs like PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_cli import assert_one_line_error, cli

import kaizen
from kaizen.data import load_data
from kaizen.evaluate import predict_proba
from kaizen.export import TOLERANCE, export_onnx

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

QUIET = ["log.tensorboard=false", "log.stats=false"]


def train(tmp_path: Path, *overrides: str) -> kaizen.Run:
    return kaizen.train(tiny_config(tmp_path / "runs", *QUIET, *overrides))


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> kaizen.Run:
    """A tiny CNN (conv, batch norm, pool, dropout) trained for two epochs."""
    folder = tmp_path_factory.mktemp("export")
    cfg = kaizen.Config.from_dict(
        {
            "model": {
                "preset": None,
                "layers": [
                    {"type": "conv", "filters": 4, "padding": "same"},
                    "norm",
                    "activation",
                    "pool",
                    "flatten",
                    "dropout",
                ],
            }
        }
    ).override(["train.epochs=2", "train.device=cpu", "log.plots=false", f"log.runs_dir={folder}", *QUIET])
    return kaizen.train(cfg)


def session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_matches_pytorch_on_any_batch_size(cnn_run: kaizen.Run, tmp_path: Path):
    """The file takes pixels in [0, 1], normalises inside, and gives the run's probabilities within 1e-4."""
    report = export_onnx(cnn_run, tmp_path / "model.onnx")
    assert report.max_diff <= TOLERANCE and report.images == 64 and "test images" in report.image_source

    model, state = cnn_run.model()
    data = load_data(cnn_run.config.data, "cpu")
    x = data.x_test[:7]  # a batch size the export never saw
    pixels = x * torch.tensor(data.std).view(1, -1, 1, 1) + torch.tensor(data.mean).view(1, -1, 1, 1)
    logits, probabilities = session(report.path).run(None, {"images": pixels.numpy()})
    expected = predict_proba(model, x).numpy()
    assert logits.shape == (7, 10)
    np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)
    metadata = {entry.key: entry.value for entry in onnx.load(str(report.path)).metadata_props}
    assert json.loads(metadata["class_names"]) == state["class_names"]
    assert json.loads(metadata["input_shape"]) == [1, 8, 8]


def test_cli_export_prints_the_difference(cnn_run: kaizen.Run, tmp_path: Path, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "export", str(cnn_run.path), "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert "max |diff|" in out and (tmp_path / "m.onnx").is_file()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary file left


def test_multitask_model_exports_its_classifier(tmp_path: Path):
    run = train(tmp_path, "model.tasks=[{name: parity}]", "train.epochs=1")
    report = export_onnx(run, tmp_path / "multi.onnx")
    assert report.max_diff <= TOLERANCE
    assert [output.name for output in session(report.path).get_outputs()] == ["logits", "probabilities"]


def test_export_of_a_run_without_its_checkpoint_is_one_line(
    cnn_run: kaizen.Run, tmp_path, monkeypatch, capsys
):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    for name in ("config.yaml", "meta.json", "summary.json"):
        (broken / name).write_bytes((cnn_run.path / name).read_bytes())
    code, _, err = cli(monkeypatch, capsys, "export", str(broken), "--onnx", str(tmp_path / "m.onnx"))
    assert_one_line_error(code, err, "checkpoint not found", "best.pt")
    assert not (tmp_path / "m.onnx").exists()


def test_export_into_a_missing_folder_is_one_line(cnn_run: kaizen.Run, tmp_path, monkeypatch, capsys):
    target = tmp_path / "no" / "such" / "m.onnx"
    code, _, err = cli(monkeypatch, capsys, "export", str(cnn_run.path), "--onnx", str(target))
    assert_one_line_error(code, err, "cannot write", str(target))


def test_missing_onnxruntime_says_how_to_install(cnn_run: kaizen.Run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    with pytest.raises(kaizen.KaizenError, match=r"pip install 'kaizen\[export\]'"):
        export_onnx(cnn_run, tmp_path / "m.onnx")
