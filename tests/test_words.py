"""Words a user can act on (issue 22): messages that say what is wrong in the user's terms, one line and exit
code 2 where kaizen used to end in a traceback, and output that reads the same in a log file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli, one_line_error, tiny_config
from PIL import Image, ImageOps

import kaizen
from kaizen import Config, KaizenError
from kaizen.data.folder_dataset import folder_dataset as load_raw
from kaizen.errors import printable
from kaizen.nn import build_model
from kaizen.study import compare_plan, execute
from kaizen.training import estimate, threads

# --- messages that mislead --------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0", "7", "[0, 3]", "[8, 8, 8]", "auto:x", "true"])
def test_image_size_is_explained_in_the_users_words(size):
    with pytest.raises(KaizenError) as error:
        Config().override([f"data.image_size={size}"])
    message = str(error.value)
    assert "give auto, an integer >= 8 or [H, W]" in message
    assert "literal" not in message and "Input should be" not in message


def test_image_size_accepts_what_the_message_offers():
    for size, expected in (("auto", "auto"), ("8", 8), ("[8, 10]", (8, 10))):
        assert Config().override([f"data.image_size={size}"]).data.image_size == expected


@pytest.mark.parametrize("value", ["true", "false"])
def test_max_memory_refuses_a_switch(value):
    with pytest.raises(KaizenError, match="data.max_memory = (True|False): give bytes or a size like 2GB"):
        Config().override([f"data.max_memory={value}"])
    assert Config().override(["data.max_memory=2GB"]).data.max_memory == "2GB"


LAYERS = "model.layers=[{type: dense, units: 16}]"


@pytest.mark.parametrize(
    "overrides",
    [[LAYERS], ["model.preset=null", LAYERS], [LAYERS, "model.preset=null"]],
    ids=["layers alone", "preset null first", "preset null after"],
)
def test_switching_from_a_preset_to_layers_with_set(overrides):
    model = Config().override(overrides).model
    assert model.preset is None
    assert [layer.type for layer in model.layers] == ["dense"]


def test_the_later_of_preset_and_layers_wins():
    model = Config().override([LAYERS, "model.preset=mlp"]).model
    assert (model.preset, model.layers) == ("mlp", None)


def test_preset_null_alone_asks_for_what_is_missing():
    with pytest.raises(KaizenError) as error:
        Config().override(["model.preset=null"])
    assert "model.layers is empty" in str(error.value)
    assert "set it to null" not in str(error.value)  # the user just did


def test_a_bad_shorthand_is_named_even_when_refined_later():
    with pytest.raises(KaizenError, match="unknown augmentation preset 'kagle'"):
        Config().override(["augment=kagle", "augment.mixup=0.2"])


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("optim.lrr", "(did you mean 'optim.lr'?)"),
        ("optim.momentun", "(did you mean 'optim.momentum'?)"),
        ("trian.epochs", "(did you mean 'train.epochs'?)"),
        ("train.lr", "(did you mean 'optim.lr'?)"),
        ("optim.lr.x", "'optim.lr' is a value, not a section"),
    ],
)
def test_did_you_mean_for_typos(key, expected):
    with pytest.raises(KaizenError) as error:
        Config().override([f"{key}=1"])
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("key", "section_keys"),
    [("train.newthing", "epochs, batch_size"), ("optim.future_opt", "name, lr, momentum")],
)
def test_a_key_from_a_newer_version_is_not_pointed_at_an_unrelated_one(key, section_keys):
    with pytest.raises(KaizenError) as error:
        Config().override([f"{key}=1"])
    message = str(error.value)
    assert "did you mean" not in message
    assert "has no such key" in message and section_keys in message


def test_unknown_correction_is_named_before_the_seed_count(tmp_path, monkeypatch, capsys):
    args = ["--vary", "optim.lr=0.01,0.02", "--seeds", "1", "-o", str(tmp_path / "study")]
    code, _, err = cli(monkeypatch, capsys, "compare", *args, "--correction", "banana")
    line = one_line_error(code, err, "--correction", "'banana'", "holm, bonferroni, none")
    assert "seeds" not in line


def test_error_text_is_not_markup(tmp_path, monkeypatch, capsys):
    folder = tmp_path / ":fire: [red]photos"
    code, _, err = cli(
        monkeypatch, capsys, "data", "--set", "data.name=folder", "--set", f"data.path={folder}"
    )
    one_line_error(code, err, str(folder))
    code, _, err = cli(monkeypatch, capsys, "config", "show", "--set", "data.image_size=auto:x")
    one_line_error(code, err, "'auto:x'")


# --- tracebacks still reachable ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"status": 3}', "'status' should be text, not number 3"),
    ],
)
def test_meta_json_of_the_wrong_shape_is_one_line(
    finished_run, tmp_path, monkeypatch, capsys, content, culprit
):
    run = tmp_path / "run"
    shutil.copytree(finished_run[1].path, run)
    (run / "meta.json").write_text(content)
    for command in (
        ["eval", str(run)],
        ["doctor", str(run)],
        ["export", str(run), "--onnx", str(tmp_path / "m")],
    ):
        code, _, err = cli(monkeypatch, capsys, *command)
        one_line_error(code, err, "meta.json", culprit)


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    """A finished one-seed compare of two learning rates on the tiny MLP."""
    folder = tmp_path_factory.mktemp("study") / "study"
    cfg = tiny_config(folder.parent / "runs", "train.epochs=1", "model.hidden=[8]")
    execute(compare_plan(cfg, ["optim.lr=0.01,0.02"], "grid", 1, "test.acc"), folder, workers=1)
    return folder


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (lambda study: [study], "holds a JSON list"),
        (lambda study: {**study, "seeds": 3}, "'seeds' should be a list, not number 3"),
        (lambda study: {**study, "seeds": ["a"]}, "'seeds' should be a list of integers"),
        (lambda study: {**study, "variants": [1]}, "each of 'variants' should be an object"),
        (lambda study: {**study, "baseline": "zz"}, "baseline 'zz' is not one of its variants"),
        (lambda study: {key: value for key, value in study.items() if key != "metric"}, "has no 'metric'"),
    ],
)
def test_study_json_of_the_wrong_shape_is_one_line(
    small_study, tmp_path, monkeypatch, capsys, change, culprit
):
    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    record = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps(change(record)))
    code, _, err = cli(monkeypatch, capsys, "report", str(study))
    one_line_error(code, err, "study.json", culprit)


def test_another_runs_checkpoint_is_one_line(finished_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run[1].path, run)
    other = kaizen.train(tiny_config(tmp_path / "runs", "model.preset=simple_cnn", "train.epochs=1"))
    shutil.copy(other.path / "checkpoints" / "best.pt", run / "checkpoints" / "best.pt")
    for command in (["eval", str(run)], ["export", str(run), "--onnx", str(tmp_path / "m.onnx")]):
        code, _, err = cli(monkeypatch, capsys, *command)
        one_line_error(code, err, "best.pt belongs to another architecture", "there", "here")


# --- kaizen --version and kaizen runs ---------------------------------------------------------------


def test_version(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"kaizen {kaizen.__version__}"


def test_runs_lists_each_run_and_a_broken_one_as_broken(finished_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "runs"
    shutil.copytree(finished_run[1].path, folder / "good")
    shutil.copytree(finished_run[1].path, folder / "damaged")
    (folder / "damaged" / "meta.json").write_text('"done"')
    code, out, err = cli(monkeypatch, capsys, "runs", str(folder))
    assert code == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].split() == ["run", "status", "data", "model", "epochs", "val", "acc", "test", "acc"]
    summary = finished_run[1].summary
    good = next(line for line in lines if line.startswith("good"))
    assert good.split() == [
        "good",
        "done",
        "digits",
        "mlp",
        "3/3",
        f"{summary['best']['val_acc']:.2%}",
        f"{summary['test']['acc']:.2%}",
    ]
    assert next(line for line in lines if line.startswith("damaged")).split()[1] == "broken"
    assert any(line.startswith("broken: ") and "meta.json holds a JSON text" in line for line in lines)
    assert lines[-1] == "2 runs, 1 broken"


def test_runs_of_a_missing_folder_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "runs", str(tmp_path / "absent"))
    one_line_error(code, err, "runs folder not found", "absent")


# --- photos: a malformed EXIF tag, warnings once, plurals -------------------------------------------


def broken_exif() -> bytes:
    """EXIF whose orientation asks for a rotation and whose ResolutionUnit (a SHORT tag) holds a LONG too big
    for a SHORT: Pillow reads it, and raises struct.error when exif_transpose writes the EXIF back."""
    entries = [(0x0112, 3, 1, 6), (0x0128, 4, 1, 70000)]  # (tag, type, count, value)
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


def photo_folder(root: Path, bad_exif: int = 1, notes: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(12):
            pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg")
    for index in range(bad_exif):
        Image.new("RGB", (16, 12), (200, 30, 30)).save(root / "cat" / f"exif{index}.jpg", exif=broken_exif())
    for index in range(notes):
        (root / "dog" / f"notes{index}.txt").write_text("not a photo")
    return root


def folder_sets(root: Path, tmp_path: Path) -> list[str]:
    overrides = [
        "data.name=folder",
        f"data.path={root}",
        "data.image_size=8",
        f"data.cache={tmp_path / 'cache'}",
        "data.val_split=0",
    ]
    return [option for item in overrides for option in ("--set", item)]


def test_a_photo_with_malformed_exif_is_skipped_and_counted(tmp_path, monkeypatch, capsys):
    with pytest.raises(struct.error):  # the defect is real: Pillow itself fails on this photo
        with Image.open(photo_folder(tmp_path / "photos") / "cat" / "exif0.jpg") as image:
            ImageOps.exif_transpose(image)
    sets = folder_sets(tmp_path / "photos", tmp_path)
    code, out, err = cli(monkeypatch, capsys, "data", *sets)
    assert code == 0, err
    assert "skipped files: 2" in out and "exif0.jpg: corrupt EXIF metadata" in out
    runs = [
        "--set",
        f"log.runs_dir={tmp_path / 'runs'}",
        "--set",
        "model.preset=mlp",
        "--set",
        "train.epochs=1",
    ]
    code, out, err = cli(monkeypatch, capsys, "train", *sets, *runs, "--set", "train.threads=1", "-q")
    assert code == 0 and "Traceback" not in err, err
    summary = kaizen.load_run(out.strip()).summary
    assert summary["data"]["train"] + summary["data"]["test"] == 24  # the 24 good photos, not the broken one


@pytest.mark.parametrize(
    ("notes", "said"), [(1, "skipped 1 file that is not an image"), (2, "skipped 2 files")]
)
def test_skipped_files_in_the_right_number(tmp_path, caplog, notes, said):
    cfg = Config().override(["data.image_size=8", "data.name=folder", f"data.path={tmp_path / 'photos'}"])
    photo_folder(tmp_path / "photos", bad_exif=0, notes=notes)
    with caplog.at_level(logging.WARNING):
        load_raw(cfg.data.model_copy(update={"cache": str(tmp_path / "cache")}))
    assert said in caplog.text and "1 files" not in caplog.text


def test_skipped_file_warnings_once_per_data_set(tmp_path, caplog):
    """Each run of a compare loads the data set again, in several worker processes: the warnings come once."""
    root = photo_folder(tmp_path / "photos", bad_exif=1, notes=2)
    data = (
        Config()
        .override(
            ["data.image_size=8", "data.name=folder", f"data.path={root}", f"data.cache={tmp_path / 'cache'}"]
        )
        .data
    )
    with caplog.at_level(logging.WARNING):
        load_raw(data)
        load_raw(data)
    assert caplog.text.count("exif0.jpg") == 1 and caplog.text.count("skipped 2 files") == 1
    # two worker processes of one command (one KAIZEN_COMMAND): the second says nothing
    root = photo_folder(tmp_path / "more photos", bad_exif=1, notes=2)
    script = (
        "from kaizen import Config; from kaizen.data.folder_dataset import folder_dataset as load_raw; "
        f"load_raw(Config().override(['data.image_size=8', 'data.name=folder', 'data.path={root}', "
        f"'data.cache={tmp_path / 'cache2'}']).data)"
    )
    command = {**os.environ, "KAIZEN_COMMAND": f"test-{tmp_path.name}"}  # as a command's workers inherit it
    first, second = (
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=command)
        for _ in range(2)
    )
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "exif0.jpg" in first.stderr and "skipped 2 files" in first.stderr
    assert "exif0.jpg" not in second.stderr and "skipped" not in second.stderr
    # the next command (a new process, as the next line of a shell script starts) is told again
    fresh = {key: value for key, value in os.environ.items() if key != "KAIZEN_COMMAND"}
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=fresh)
    assert again.returncode == 0 and "exif0.jpg" in again.stderr, again.stderr


# --- a busy machine ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "load", "expected", "why"),
    [
        (2, 0.1, 2, "2 of 2 cores free"),
        (2, 1.2, 1, "1 of 2 cores free"),
        (2, 6.7, 1, "no core free"),
        (8, 2.6, 5, "5 of 8 cores free"),
    ],
)
def test_default_threads_are_the_cores_free(monkeypatch, cores, load, expected, why):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cpu_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    count, said = threads.free_threads()
    assert count == expected and why in said and f"{load:.2f}" in said


def test_a_run_says_how_many_threads_and_why(make_config, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cpu_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.9, 1.0, 1.0))  # another job holds both cores
    before = torch.get_num_threads()
    try:
        code, out, err = cli(
            monkeypatch, capsys, "train", *tiny_sets(make_config), "--set", "log.progress=true"
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    assert "threads: 1 (no core free: 1-minute load average 1.90 on 2 cores" in err
    run = kaizen.load_run(out.strip().splitlines()[-1].split()[1])
    assert run.meta["threads"] == {
        "count": 1,
        "why": "no core free: 1-minute load average 1.90 on 2 cores; 1 thread",
    }
    assert run.config.train.threads == 1


def tiny_sets(make_config) -> list[str]:
    """The tiny config of conftest as --set options (train.threads left unset)."""
    cfg = make_config()
    items = [*TINY, f"log.runs_dir={cfg.log.runs_dir}"]
    return [option for item in items for option in ("--set", item)]


# --- a log file -------------------------------------------------------------------------------------


def test_a_log_file_gets_one_plain_line_per_epoch(make_config, monkeypatch, capsys):
    """stderr captured is not a terminal, as under nohup, CI or Slurm: no live display, a line per epoch."""
    args = [*tiny_sets(make_config), "--set", "train.epochs=3", "--set", "train.threads=1"]
    code, out, err = cli(monkeypatch, capsys, "train", *args)
    assert code == 0, err
    epochs = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(" · ")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    rows = kaizen.load_run(out.strip().splitlines()[-1].split()[1]).metrics()
    last_val = next(row for row in reversed(rows) if row["split"] == "val")
    assert f"val loss {last_val['loss']:.4f} acc {last_val['acc']:.2%}" in epochs[-1]
    assert "\x1b[" not in err and "━" not in err  # no escape codes, no bar


# --- sizes that cannot fit, sets too small ----------------------------------------------------------


def test_lr_find_on_a_tiny_training_set_is_one_line(tmp_path, monkeypatch, capsys):
    args = ["--set", "model.preset=mlp", "--set", "data.fraction=0.02", "--set", "train.threads=1"]
    code, _, err = cli(monkeypatch, capsys, "lr-find", *args, "--set", f"log.runs_dir={tmp_path}")
    one_line_error(code, err, "lr-find needs at least 40 training images", "holds 26", "data.fraction")
    code, out, err = cli(monkeypatch, capsys, "lr-find", "--apply", *args[:2], "--set", "data.fraction=0.031")
    assert code == 0 and out.startswith("--set optim.lr="), err  # 40 images: batches of 2 through batch norm


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path, monkeypatch, capsys):
    sets = [
        "--set",
        "model.preset=mlp",
        "--set",
        "model.hidden=[100000000]",
        "--set",
        f"log.runs_dir={tmp_path}",
    ]
    code, _, err = cli(monkeypatch, capsys, "train", *sets)
    one_line_error(code, err, "model.hidden = [100000000] needs about", "GiB to train", "is available")
    assert not any(tmp_path.iterdir())  # no run directory was started
    code, out, err = cli(monkeypatch, capsys, "data", *sets)
    assert code == 0 and "class" in out
    assert "warning: model.hidden = [100000000] needs about" in err


def test_an_image_size_too_large_is_refused_before_decoding(tmp_path, monkeypatch, capsys):
    root = photo_folder(tmp_path / "photos", bad_exif=0, notes=0)
    sets = folder_sets(root, tmp_path)
    sets[sets.index("data.image_size=8")] = "data.image_size=100000"
    code, _, err = cli(monkeypatch, capsys, "train", *sets, "--set", f"log.runs_dir={tmp_path / 'runs'}")
    one_line_error(code, err, "data.image_size = 100000 needs about", "TiB to train")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_the_estimate_is_of_the_right_size():
    cfg = Config().override(["model.preset=mlp", "model.hidden=[32]", "train.batch_size=16"])
    found = estimate.estimate(cfg, (1, 8, 8), 10)
    model = build_model(cfg.model, cfg.init, (1, 8, 8), 10)
    assert found.params == sum(parameter.numel() for parameter in model.parameters())
    assert found.inputs == 16 * 64 * 4


@pytest.mark.parametrize(
    "damage",
    [
        lambda manifest: manifest.pop("kept"),
        lambda manifest: manifest["kept"]["train"].append(10_000),
        lambda manifest: manifest["kept"].update(train=[-1] + manifest["kept"]["train"][1:]),
        lambda manifest: manifest["kept"].update(train="all"),
        lambda manifest: manifest.update(problems=[]),
    ],
    ids=["kept missing", "index past the files", "negative index", "not a list", "problems not a mapping"],
)
def test_a_hand_edited_cache_manifest_is_decoded_again(tmp_path, monkeypatch, capsys, caplog, damage):
    root = photo_folder(tmp_path / "photos", bad_exif=0, notes=0)
    sets = folder_sets(root, tmp_path)
    code, before, err = cli(monkeypatch, capsys, "data", *sets)
    preview = ["augment-preview", *sets, "--set", "augment=kaggle", "-o"]
    code, _, err = cli(monkeypatch, capsys, *preview, str(tmp_path / "preview.png"))  # decodes, caches
    assert code == 0, err
    manifest_path = next((tmp_path / "cache").rglob("manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    damage(manifest)
    manifest_path.write_text(json.dumps(manifest))
    code, after, err = cli(monkeypatch, capsys, "data", *sets)
    assert code == 0 and "Traceback" not in err, err
    assert "damaged manifest" in after
    with caplog.at_level(logging.WARNING):
        code, _, err = cli(monkeypatch, capsys, *preview, str(tmp_path / "again.png"))
    assert code == 0, err
    assert "damaged manifest" in caplog.text and "decoding again" in caplog.text
    assert json.loads(manifest_path.read_text())["kept"]["train"] == list(range(24))  # written afresh


def test_a_run_finds_its_data_from_another_directory(tmp_path, monkeypatch, capsys):
    photo_folder(tmp_path / "project" / "photos", bad_exif=0, notes=0)
    monkeypatch.chdir(tmp_path / "project")
    sets = ["--set", "data.name=folder", "--set", "data.path=photos", "--set", "data.image_size=8"]
    sets += ["--set", "data.cache=cache", "--set", "model.preset=mlp", "--set", "train.epochs=1"]
    code, out, err = cli(monkeypatch, capsys, "train", *sets, "--set", "train.threads=1", "-q")
    assert code == 0, err
    run = Path(out.strip()).resolve()
    assert kaizen.load_run(run).config.data.path == str(tmp_path / "project" / "photos")
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still knows where its photos are
    code, out, err = cli(monkeypatch, capsys, "eval", str(run))
    assert code == 0 and out.startswith("test accuracy"), err
    # the photos moved: say where they are now
    (tmp_path / "project" / "photos").rename(tmp_path / "moved")
    code, _, err = cli(monkeypatch, capsys, "eval", str(run))
    one_line_error(code, err, "data.path", "not a folder", f"if the data moved: kaizen eval {run} --set data.path=NEW")
    code, out, err = cli(monkeypatch, capsys, "eval", str(run), "--set", f"data.path={tmp_path / 'moved'}")
    assert code == 0 and out.startswith("test accuracy"), err
    code, _, err = cli(monkeypatch, capsys, "eval", str(run), "--set", "optim.lr=3")
    one_line_error(code, err, "--set optim.lr=3", "a trained run keeps its config", "data.path")


# --- file names that are not UTF-8 ------------------------------------------------------------------


@pytest.fixture
def latin1_photos(tmp_path) -> Path:
    """Two classes of photos whose file names hold a byte that is not UTF-8 (0xff, as Latin-1 'ÿ' makes)."""
    if sys.platform == "win32" or sys.getfilesystemencoding().lower() != "utf-8":
        pytest.skip("needs a file system that takes any bytes in a name")
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(12):
            path = os.fsencode(root / name) + b"/" + str(index).encode() + b"\xff.png"
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(os.fsdecode(path))
    return root


def test_printable_shows_the_bytes_as_repr_does():
    assert printable(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert printable("café.png") == "café.png"


def test_predict_and_audit_with_names_that_are_not_utf8(latin1_photos, tmp_path, monkeypatch, capsys):
    sets = folder_sets(latin1_photos, tmp_path) + ["--set", "model.preset=mlp", "--set", "train.threads=1"]
    code, out, err = cli(
        monkeypatch,
        capsys,
        "train",
        *sets,
        "--set",
        "train.epochs=1",
        "--set",
        f"log.runs_dir={tmp_path}/runs",
        "-q",
    )
    assert code == 0, err
    code, _, err = cli(
        monkeypatch, capsys, "predict", out.strip(), "-i", str(latin1_photos), "-o", str(tmp_path / "p.csv")
    )
    assert code == 0 and "Traceback" not in err, err
    lines = (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25 and lines[1].split(",")[0].endswith("cat/0\\xff.png")
    code, out, err = cli(
        monkeypatch, capsys, "audit", *sets, "--folds", "2", "--budget", "1", "-o", str(tmp_path / "audit")
    )
    assert code == 0 and "Traceback" not in err, err
    issues = (tmp_path / "audit" / "issues.csv").read_text(encoding="utf-8")
    assert "\\xff.png" in issues
    code, out, err = cli(  # the issues file names the photos as written; training on it finds them
        monkeypatch,
        capsys,
        "train",
        *sets,
        "--set",
        "train.epochs=1",
        "--set",
        f"log.runs_dir={tmp_path}/runs",
        "--set",
        f"data.exclude={tmp_path / 'audit' / 'issues.csv'}",
        "-q",
    )
    assert code == 0, err


def test_vary_names_an_unknown_key_the_same_way(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "compare", "--vary", "train.newthing=1,2", "-o", str(tmp_path / "s"))
    line = one_line_error(code, err, "--vary: unknown config key 'train.newthing'", "has no such key")
    assert "did you mean" not in line
