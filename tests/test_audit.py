"""kaizen audit: planted wrong labels and leaks are found, the files are complete, a cleaned index trains,
an interrupted audit resumes, and bad input gets one line and exit code 2."""

from __future__ import annotations

import builtins
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli

import kaizen
from kaizen.audit import run_audit
from kaizen.audit.report import GRID_MAX
from kaizen.config import DataConfig
from kaizen.data import load_data
from kaizen.data.datasets import digits_dataset
from kaizen.data.selection import FIXABLE, KEEP_HEADER, select_training
from kaizen.errors import KaizenError

FOLDS = 3
# A small MLP that reaches about 94% out-of-fold accuracy on digits in 3 epochs (~1 s per fold on one thread).
AUDIT = ["model.preset=mlp", "model.hidden=[64]", "optim.lr=3e-3", "train.epochs=3", "train.device=cpu"]
FLIPPED_SHARE, COPIES = 0.10, 10


def planted(folder: Path) -> dict[str, np.ndarray]:
    """train.npz / test.npz from digits with 10% of training labels flipped, and COPIES test images copied
    into training as they are and COPIES more shifted one pixel right. Returns the planted indices."""
    raw = digits_dataset(DataConfig())
    rng = np.random.default_rng(0)
    n = len(raw.train_y)
    flipped = np.sort(rng.choice(n, round(FLIPPED_SHARE * n), replace=False))
    labels = raw.train_y.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    picked = rng.choice(len(raw.test_y), 2 * COPIES, replace=False)
    moved = np.zeros_like(raw.test_x[picked[COPIES:]])
    moved[..., 1:] = raw.test_x[picked[COPIES:]][..., :-1]
    x = np.concatenate([raw.train_x, raw.test_x[picked[:COPIES]], moved])
    y = np.concatenate([labels, raw.test_y[picked]])
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=x, y=y)
    np.savez(folder / "test.npz", x=raw.test_x, y=raw.test_y)
    return {
        "flipped": flipped,
        "exact": np.arange(n, n + COPIES),
        "shifted": np.arange(n + COPIES, n + 2 * COPIES),
        "clean": np.setdiff1d(np.arange(n), flipped),
    }


def npz_config(folder: Path, *overrides: str) -> kaizen.Config:
    return kaizen.Config().override(
        [
            "data.name=npz",
            f"data.path={folder / 'train.npz'}",
            f"data.test_path={folder / 'test.npz'}",
            f"log.runs_dir={folder / 'runs'}",
            *AUDIT,
            *overrides,
        ]
    )


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("audit")
    truth = planted(folder / "data")
    cfg = npz_config(folder / "data")
    result = run_audit(cfg, folder / "audit", folds=FOLDS, workers=1, fix=True)
    return cfg, truth, result


def test_planted_label_errors_and_leaks_are_found(audited):
    _, truth, result = audited
    labels = {issue.index for issue in result.issues if issue.issue == "label"}
    hits = len(labels & set(truth["flipped"].tolist()))
    precision, recall = hits / len(labels), hits / len(truth["flipped"])
    assert precision >= 0.7 and recall >= 0.7, (precision, recall)  # 5 folds, 10 epochs: 0.95 / 0.93
    leaks = {issue.index: issue for issue in result.issues if issue.issue == "leak"}
    assert set(truth["exact"]) <= set(leaks) and all(leaks[i].score == 1.0 for i in truth["exact"])
    assert set(truth["shifted"]) <= set(leaks)
    copies = {issue.index for issue in result.issues if issue.issue in ("leak", "duplicate")}
    assert len(copies & set(truth["clean"].tolist())) < 0.01 * len(truth["clean"])


def test_files_agree_with_the_findings(audited):
    _, _, result = audited
    out = result.out_dir
    with (out / "issues.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["split", "index", "path", "label", "suggested", "issue", "score"]
    summary = json.loads((out / "audit.json").read_text())
    for kind, count in summary["counts"].items():
        assert sum(row["issue"] == kind for row in rows) == count
    assert summary["counts"]["high_loss"] >= 10 and summary["settings"]["folds"] == FOLDS
    label_rows = [row for row in rows if row["issue"] == "label"]
    assert all(row["suggested"] and row["suggested"] != row["label"] for row in label_rows)
    page = (out / "report.html").read_text()
    assert "Class balance" in page and "data:image/png;base64," in page
    for row in label_rows[:GRID_MAX]:  # the worst label issues are shown, captioned with index and labels
        assert f"train {row['index']}<br>{row['label']} → {row['suggested']}" in page
    if len(label_rows) > GRID_MAX:
        assert f"… and {len(label_rows) - GRID_MAX} more in issues.csv" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained
    dropped = {int(row["index"]) for row in rows if row["issue"] in FIXABLE}
    lines = (out / "keep.txt").read_text().splitlines()
    assert lines[0].startswith(KEEP_HEADER)  # NPZ arrays: examples named by their row
    kept = [int(line.removeprefix("row ")) for line in lines[1:]]
    assert len(kept) == result.kept == summary["data"]["train_examples"] - len(dropped)
    assert not dropped & set(kept)
    assert sorted(path.name for path in (out / "runs").iterdir()) == [f"fold{k + 1}" for k in range(FOLDS)]


def test_training_on_the_cleaned_index(audited):
    cfg, _, result = audited
    plain = load_data(cfg.data)
    full = len(plain.y_train) + len(plain.y_val)
    dropped = full - result.kept
    trained = set()
    for key, name in (("exclude", "issues.csv"), ("keep", "keep.txt")):
        data = load_data(cfg.override([f"data.{key}={result.out_dir / name}"]).data)
        # the cleaning selects what trains: the validation examples are the same ones, flagged or not, so a
        # cleaned and an uncleaned run are scored alike
        assert torch.equal(data.y_val, plain.y_val) and torch.equal(data.pixels["val"], plain.pixels["val"])
        assert 0 < len(plain.y_train) - len(data.y_train) <= dropped
        trained.add(len(data.y_train))
    assert len(trained) == 1  # the issues file and the keep file drop the same training examples


def test_an_interrupted_audit_resumes_without_redoing_finished_folds(audited, tmp_path):
    cfg, _, result = audited
    copy = tmp_path / "audit"
    shutil.copytree(result.out_dir, copy)
    meta = copy / "runs" / "fold2" / "seed0" / "meta.json"
    meta.write_text(meta.read_text().replace('"done"', '"stopped"'))  # as Ctrl-C leaves it
    again = run_audit(cfg, copy, folds=FOLDS, workers=1)
    assert (again.trained, again.reused) == (1, FOLDS - 1)
    assert again.counts["leak"] == result.counts["leak"]


def bad_exclude(tmp_path: Path, rows: list[str], count: int | None = None) -> Path:
    path = tmp_path / "issues.csv"
    path.write_text("split,index,path,label,suggested,issue,score\n" + "".join(f"{row}\n" for row in rows))
    if count is not None:
        (tmp_path / "audit.json").write_text(json.dumps({"data": {"train_examples": count}}))
    return path


@pytest.mark.parametrize(
    ("rows", "count", "message"),
    [
        (["train,3,,1,2,label,0.9"], 99, "audit of 99 training examples, but this data has 1,438"),
        (["train,5000,,1,2,label,0.9"], None, "index 5000 is out of range 0..1437"),
        (["train,x,,1,2,label,0.9"], None, "'x' is not an example index"),
        (["train,3,a/b.png,1,2,label,0.9"], None, "names file a/b.png, but this data has no files"),
    ],
)
def test_an_exclude_file_for_other_data_is_refused(tmp_path, monkeypatch, capsys, rows, count, message):
    path = bad_exclude(tmp_path, rows, count)
    runs = tmp_path / "runs"
    code, _, err = cli(
        monkeypatch, capsys, "train", "--set", f"data.exclude={path}", "--set", f"log.runs_dir={runs}"
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not runs.exists()  # refused before any run directory is made


def test_an_exclude_path_must_be_the_file_at_that_index(tmp_path):
    raw = digits_dataset(DataConfig())
    raw.train_paths = [f"digits/{index:04d}.png" for index in range(len(raw.train_y))]  # as folder data has
    rows = ["train,7,digits/0007.png,1,2,label,0.9", "train,8,digits/0009.png,1,2,label,0.9"]
    (tmp_path / "bad").mkdir()
    every = np.arange(len(raw.train_y))
    with pytest.raises(KaizenError, match="digits/0009.png is not training example 8"):
        select_training(raw, DataConfig(exclude=str(bad_exclude(tmp_path / "bad", rows))), every)
    train, note = select_training(raw, DataConfig(exclude=str(bad_exclude(tmp_path, rows[:1]))), every)
    assert len(train) == len(raw.train_y) - 1 and 7 not in train and "training on" in note
    # only rows of the given training part are selected: the validation part is not the selection's
    part, _ = select_training(raw, DataConfig(exclude=str(bad_exclude(tmp_path, rows[:1]))), every[5:20])
    assert list(part) == [row for row in range(5, 20) if row != 7]


def test_a_keep_file_is_checked(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("1\n2\n2\n")
    with pytest.raises(KaizenError, match="lists row 2 twice"):
        load_data(DataConfig(keep=str(keep)))
    keep.write_text("1\n2000\n")
    with pytest.raises(KaizenError, match="index 2000 is out of range"):
        load_data(DataConfig(keep=str(keep)))
    with pytest.raises(KaizenError, match="not both"):
        kaizen.Config().override([f"data.keep={keep}", f"data.exclude={keep}"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "1"], "--folds must be at least 2"),
        (["--folds", "200"], "--folds 200 is more than the"),
        # data paths are recorded resolved, so the message names the file wherever the command ran
        (["--set", "data.name=npz", "--set", "data.path=missing.npz"], f"file not found: {Path.cwd() / 'missing.npz'}"),
        (["--budget", "0"], "--budget must be at least 1"),
    ],
)
def test_bad_audit_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    code, _, err = cli(monkeypatch, capsys, "audit", "-o", str(tmp_path / "a"), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a" / "runs").exists()


def test_one_class_data_has_no_labels_to_audit(tmp_path, monkeypatch, capsys):
    np.savez(
        tmp_path / "one.npz", x=np.random.default_rng(0).random((40, 8, 8), dtype=np.float32), y=np.zeros(40)
    )
    code, _, err = cli(
        monkeypatch, capsys, "audit", "-o", str(tmp_path / "a"), "--set", "data.name=npz", "--set",
        f"data.path={tmp_path / 'one.npz'}",
    )  # fmt: skip
    assert code == 2 and "one class" in err and len(err.strip().splitlines()) == 1, err


def test_cleanlab_missing_gives_the_install_hint(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_cleanlab(name, *args, **kwargs):
        if name == "cleanlab" or name.startswith("cleanlab."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cleanlab)
    code, _, err = cli(monkeypatch, capsys, "audit", "-o", str(tmp_path / "a"))
    assert code == 2 and 'pip install "kaizen[audit]"' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_doctor_mentions_an_audit_of_the_same_data(audited):
    from kaizen.doctor.hints import doctor_notes

    cfg, _, result = audited
    notes = doctor_notes(result.out_dir, cfg, audits_dir=result.out_dir.parent)
    assert [note.code for note in notes] == ["data_audit"]
    assert notes[0].details["counts"] == result.counts and "data.exclude=null," in notes[0].explanation
    other = cfg.override(["data.split_seed=1"])
    assert all(
        note.code != "data_audit" for note in doctor_notes(result.out_dir, other, result.out_dir.parent)
    )


def test_doctor_suggests_an_audit_when_top_losses_sit_in_two_classes(tmp_path):
    from PIL import Image

    from kaizen.doctor.hints import doctor_notes

    # a folder of the digits whose val/ folder holds the 1s under 7/ and the 7s under 1/ (the doctor reads
    # validation losses, never the test split's)
    raw = digits_dataset(DataConfig())
    rows = np.random.default_rng(0).permutation(len(raw.train_y))
    val = set(rows[: len(rows) // 5].tolist())
    for split, images, labels in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        for index, (image, label) in enumerate(zip(images, labels)):
            where = "val" if split == "train" and index in val else split
            if where == "val" and label in (1, 7):
                label = 8 - label
            folder = tmp_path / "digits" / where / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image[0] * 255).astype(np.uint8)).save(folder / f"{index}.png")
    cfg = kaizen.Config().override(
        [
            "data.name=folder",
            f"data.path={tmp_path / 'digits'}",
            f"data.cache={tmp_path / 'cache'}",
            f"log.runs_dir={tmp_path / 'runs'}",
            *AUDIT,
            "log.stats=false",
            "log.tensorboard=false",
            "log.plots=false",
        ]
    )
    run = kaizen.train(cfg)
    notes = doctor_notes(run.path, cfg, audits_dir=tmp_path / "none")
    assert [note.code for note in notes] == ["losses_in_few_classes"]
    assert notes[0].details["share"] >= 0.75 and set(notes[0].details["classes"]) == {"1", "7"}
