"""Evaluation metrics against hand-computed numbers, and the PNG figures of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from rich.console import Console

from kaizen.errors import KaizenError
from kaizen.evaluate import evaluate, headline, plot_evaluation, predict_proba, render_evaluation
from kaizen.track.plots import plot_confusion, plot_curves, plot_mistakes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER = "epoch,split,loss,acc,lr,seconds\n"

# Six samples, three classes. Rows are probabilities; the argmax is the prediction.
PROBS = torch.tensor(
    [
        [0.80, 0.10, 0.10],  # true 0, pred 0
        [0.30, 0.60, 0.10],  # true 0, pred 1 (wrong, confidence 0.60)
        [0.10, 0.70, 0.20],  # true 1, pred 1
        [0.05, 0.05, 0.90],  # true 1, pred 2 (wrong, confidence 0.90)
        [0.20, 0.20, 0.60],  # true 2, pred 2
        [0.70, 0.10, 0.20],  # true 2, pred 0 (wrong, confidence 0.70)
    ]
)
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
NAMES = ["zero", "one", "two"]


def assert_png(path: Path, min_side: int = 100) -> np.ndarray:
    """Check the file is a real, readable PNG of a non-trivial size with more than one colour."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= min_side and pixels.shape[1] >= min_side
    assert pixels.std() > 0.01  # not a blank canvas
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    return pixels


def write_metrics(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


# --- evaluate ---------------------------------------------------------------------------------------


def test_evaluate_matches_hand_computed_metrics():
    ev = evaluate(PROBS, LABELS, NAMES)

    assert ev.accuracy == pytest.approx(3 / 6)
    true_class_probs = [0.80, 0.30, 0.70, 0.05, 0.60, 0.20]
    assert ev.loss == pytest.approx(-sum(math.log(p) for p in true_class_probs) / 6, rel=1e-6)
    np.testing.assert_array_equal(ev.confusion, [[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    assert ev.confusion.dtype.kind == "i"
    # Each class: one of two true samples found (recall 1/2); one of two predictions right (precision 1/2).
    np.testing.assert_allclose(ev.precision, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(ev.recall, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(ev.f1, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(ev.support, [2, 2, 2])
    assert ev.macro_f1 == pytest.approx(0.5)
    assert ev.count == 6


def test_evaluate_uneven_classes_and_zero_division():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    ev = evaluate(probs, labels, ["a", "b", "c"])

    # Predictions 0, 0, 0, 1. Class a: precision 2/3, recall 1. Class b: precision 1, recall 1/2.
    # Class c: never true and never predicted, so 0 everywhere (zero_division=0).
    np.testing.assert_allclose(ev.precision, [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(ev.recall, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(ev.f1, [0.8, 2 / 3, 0.0])
    np.testing.assert_array_equal(ev.support, [2, 2, 0])
    assert ev.macro_precision == pytest.approx((2 / 3 + 1) / 3)
    assert ev.macro_recall == pytest.approx(1.5 / 3)
    assert ev.macro_f1 == pytest.approx((0.8 + 2 / 3) / 3)
    assert ev.accuracy == pytest.approx(0.75)


def test_loss_is_finite_when_true_class_probability_is_zero():
    ev = evaluate(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), ["a", "b"])
    assert ev.loss == pytest.approx(-math.log(1e-12))


def test_worst_mistakes_are_ordered_by_wrong_confidence():
    ev = evaluate(PROBS, LABELS, NAMES)
    assert ev.worst_mistakes(10).tolist() == [3, 5, 1]
    assert ev.worst_mistakes(2).tolist() == [3, 5]
    assert ev.worst_mistakes(0).tolist() == []
    perfect = evaluate(torch.eye(3), torch.arange(3), NAMES)
    assert perfect.worst_mistakes(5).tolist() == []
    assert perfect.accuracy == 1.0


def test_evaluate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one column per class"):
        evaluate(PROBS, LABELS, ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        evaluate(PROBS[:5], LABELS, NAMES)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        evaluate(PROBS, torch.tensor([0, 0, 1, 1, 2, 3]), NAMES)


def test_render_and_headline():
    ev = evaluate(PROBS, LABELS, NAMES)
    table = render_evaluation(ev)
    assert [column.header for column in table.columns] == ["class", "precision", "recall", "F1", "support"]
    assert table.row_count == len(NAMES) + 1
    console = Console(record=True, width=100)
    console.print(table)
    text = console.export_text()
    assert "macro avg" in text and "two" in text and "0.5000" in text

    big = evaluate(torch.eye(2).repeat(1000, 1), torch.tensor([0, 1]).repeat(1000), ["a", "b"])
    assert headline(big) == "test accuracy 100.00% · loss 0.0000 · 2,000 images"
    assert headline(ev, split="val").startswith("val accuracy 50.00% · loss ")


# --- predict_proba ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start_training", [True, False])
def test_predict_proba_matches_softmax_and_keeps_mode(start_training):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 4),
    )
    x = torch.randn(37, 6)
    model.train()
    model(torch.randn(64, 6))  # give batch norm non-trivial running statistics
    model.train(start_training)

    probs = predict_proba(model, x, batch_size=8)

    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)
    assert probs.dtype == torch.float32
    assert probs.shape == (37, 4)
    assert probs.device == x.device
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(37))
    model.train(start_training)
    predict_proba(model, x)
    assert model.training is start_training
    assert all(module.training is start_training for module in model.modules())


def test_predict_proba_restores_mode_when_forward_fails():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    model.train()
    with pytest.raises(RuntimeError):
        predict_proba(model, torch.randn(4, 5))
    assert model.training


# --- plots ------------------------------------------------------------------------------------------


def test_plot_curves_train_val_and_test(tmp_path):
    rows = []
    for epoch in range(1, 13):
        rows.append(f"{epoch},train,{2 / epoch:.4f},{1 - 0.5 / epoch:.4f},0.01,1.5")
        rows.append(f"{epoch},val,{2 / epoch + 0.01 * epoch:.4f},{0.95 - 0.5 / epoch:.4f},,0.2")
    rows.append("12,test,0.3,0.91,,0.2")
    csv_path = write_metrics(tmp_path / "run", rows)
    out = tmp_path / "run" / "curves.png"
    plot_curves(csv_path, out)
    pixels = assert_png(out, min_side=400)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # two panels side by side (~10 × 4 in)


def test_plot_curves_single_epoch_train_only(tmp_path):
    csv_path = write_metrics(tmp_path / "run", ["1,train,0.9,0.7,0.01,1.0"])
    plot_curves(csv_path, tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


def test_plot_curves_single_epoch_with_val_and_nan(tmp_path):
    csv_path = write_metrics(tmp_path / "run", ["1,train,nan,0.7,0.01,1.0", "1,val,1.1,,,0.2"])
    plot_curves(csv_path, tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


def test_plot_curves_overwrites_atomically(tmp_path):
    csv_path = write_metrics(tmp_path, ["1,train,0.9,0.7,0.01,1.0", "2,train,0.5,0.8,0.01,1.0"])
    out = tmp_path / "curves.png"
    out.write_bytes(b"old")
    plot_curves(csv_path, out)
    assert_png(out)


def test_plot_curves_reports_bad_input(tmp_path):
    with pytest.raises(KaizenError, match="cannot read"):
        plot_curves(tmp_path / "missing.csv", tmp_path / "curves.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(KaizenError, match="missing column"):
        plot_curves(bad, tmp_path / "curves.png")
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    with pytest.raises(KaizenError, match="no train, val or test rows"):
        plot_curves(empty, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("n_classes", [3, 10, 20])
def test_plot_confusion(tmp_path, n_classes):
    rng = np.random.default_rng(n_classes)
    matrix = rng.integers(0, 20, (n_classes, n_classes))
    matrix[np.arange(n_classes), np.arange(n_classes)] += 500
    matrix[0] = 0  # a class with no samples must not divide by zero
    out = tmp_path / "confusion.png"
    plot_confusion(matrix, [f"class {i}" for i in range(n_classes)], out, title="confusion matrix · test")
    assert_png(out, min_side=300)


def test_plot_confusion_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        plot_confusion(np.zeros((3, 3), dtype=int), ["a", "b"], tmp_path / "c.png", title="t")


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_mistakes_grid(tmp_path, channels):
    rng = np.random.default_rng(0)
    images = rng.random((11, channels, 12, 12)) * 1.4 - 0.2  # out-of-range values are clipped
    out = tmp_path / "mistakes.png"
    plot_mistakes(
        images, [3] * 11, [8] * 11, [0.97 - 0.05 * i for i in range(11)], [str(i) for i in range(10)], out
    )
    assert_png(out, min_side=200)


def test_plot_mistakes_none(tmp_path):
    out = tmp_path / "mistakes.png"
    plot_mistakes(np.zeros((0, 1, 8, 8)), [], [], [], ["a", "b"], out)
    assert_png(out, min_side=100)


def test_plot_evaluation_writes_both_figures(tmp_path):
    ev = evaluate(PROBS, LABELS, NAMES)
    images = torch.rand(6, 1, 8, 8)
    paths = plot_evaluation(ev, images, tmp_path / "eval", split="val")
    assert [path.name for path in paths] == ["confusion_matrix_val.png", "mistakes_val.png"]
    for path in paths:
        assert_png(path)


def test_plot_curves_marks_the_weights_the_run_kept_with_the_numbers_train_prints(tmp_path):
    # validation loss is lowest at epoch 6 (best.pt, what `kaizen train` prints: "val acc 93.00% (epoch 6)");
    # validation accuracy peaks later, at epoch 10. The picture must not call epoch 10 "best" beside a terminal
    # that names epoch 6: it marks epoch 6 on both panels with its numbers and says where the accuracy peaked
    from kaizen.track.plots import _read_metrics, curves_figure

    rows = []
    for epoch in range(1, 13):
        val_loss = 0.5 + abs(epoch - 6) * 0.05
        val_acc = 0.95 - abs(epoch - 10) * 0.005 if epoch != 6 else 0.93
        rows.append(f"{epoch},train,{1 / epoch:.4f},{1 - 0.3 / epoch:.4f},0.01,1.0")
        rows.append(f"{epoch},val,{val_loss:.4f},{val_acc:.4f},,0.2")
    curves = _read_metrics(write_metrics(tmp_path / "run", rows))
    kept = {"checkpoint": "best.pt", "epoch": 6, "monitor": "val_loss"}
    loss_ax, acc_ax = curves_figure(curves, "t", kept).axes
    assert [t.get_text() for t in loss_ax.texts] == ["best.pt · epoch 6 (lowest val loss)\nval loss 0.5000"]
    assert [t.get_text() for t in acc_ax.texts] == [
        "best.pt · epoch 6\nval acc 93.00%\nhighest 95.00% at epoch 10"
    ]
    # a run that ends with its last weights (restore_best off) marks the last epoch
    last = curves_figure(curves, "t", {"checkpoint": "last.pt", "epoch": 12, "monitor": "val_loss"}).axes
    assert last[1].texts[0].get_text().startswith("last.pt · epoch 12\nval acc 94.00%")
    # without a finished run's choice (still training, or stopped), each panel marks its own best epoch
    loss_ax, acc_ax = curves_figure(curves, "t", None).axes
    assert acc_ax.texts[0].get_text() == "best val 95.00%\nepoch 10"


def test_a_finished_run_draws_the_checkpoint_it_chose(tmp_path):
    from kaizen.track.writer import RunWriter

    writer = RunWriter(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(
        json.dumps({"checkpoint": "best.pt", "best_epoch": 3, "epochs_completed": 5, "monitor": "val_acc"})
    )
    assert writer._kept() == {"checkpoint": "best.pt", "epoch": 3, "monitor": "val_acc"}
    (tmp_path / "run" / "summary.json").write_text(
        json.dumps({"checkpoint": "last.pt", "best_epoch": 3, "epochs_completed": 5, "monitor": "val_loss"})
    )
    assert writer._kept()["epoch"] == 5
    (tmp_path / "run" / "summary.json").write_text("[1, 2")  # damaged: the pictures still get drawn
    assert writer._kept() is None
