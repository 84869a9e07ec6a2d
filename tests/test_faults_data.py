"""Fault injection on the data and the run directory: never the wrong pixels, never two writers (issue 21).

Each test inflicts what a user, a second process or the machine does (another setting on one folder, bytes
overwritten in the cache, a file rewritten with its old size and time, a renamed file under a keep.txt, a
second `--resume`, SIGTERM, a planted symbolic link, a full disk) and checks what kaizen then does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli, one_line_error, tiny_config
from test_folder import folder_config, make_classes, write_image

import kaizen
from kaizen.data import folder as folder_module
from kaizen.data import imagecache, load_data
from kaizen.errors import KaizenError
from kaizen.track import rundir


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test caches under its own tmp_path, never in the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def load(root: Path, *overrides: str):
    return load_data(folder_config(root, "data.val_split=0", *overrides).data)


def fresh_pixels(data, resize: str = "stretch") -> np.ndarray:
    """The training split's pixels decoded again from its files now, without any cache."""
    channels, height, width = data.input_shape
    decoded = folder_module.decode_many(data.paths["train"], (height, width), channels, resize)
    return np.stack([item.pixels for item in decoded])


def loaded_pixels(data) -> np.ndarray:
    return data.pixels["train"].numpy()


def counting_decodes(monkeypatch) -> list:
    calls: list = []
    real = imagecache.iter_decoded
    monkeypatch.setattr(imagecache, "iter_decoded", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def cache_of(root: Path, *overrides: str) -> Path:
    cfg = folder_config(root, *overrides).data
    return imagecache.cache_dir(cfg, folder_module.scan_folder(cfg))


def images_file(cache: Path) -> Path:
    manifest = json.loads((cache / "manifest.json").read_text())
    return cache / manifest["images"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two classes of wide images (crop, pad and stretch make different pixels of them)."""
    root = tmp_path / "photos"
    for name, base in (("a", 40), ("b", 160)):
        for index in range(6):
            pixels = np.zeros((10, 20), dtype=np.uint8)
            pixels[:, :5] = 250  # a bright left edge: crop cuts it, stretch squeezes it, pad keeps it
            pixels[:, 5:] = base + 10 * index
            path = root / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(pixels, "L").save(path)
    return root


# --- the image cache ----------------------------------------------------------------------------------


def test_other_settings_on_one_folder_keep_their_own_caches(photos, monkeypatch, caplog):
    calls = counting_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        crop = load(photos, "data.image_size=8", "data.resize=crop")
        stretch = load(photos, "data.image_size=8", "data.resize=stretch")
        again = {
            resize: load(photos, "data.image_size=8", f"data.resize={resize}")
            for resize in ("crop", "stretch")
        }
    assert len(calls) == 2, "each setting decodes once, then both are read from their caches"
    assert "decoding again" not in caplog.text
    assert "from the cache" in again["crop"].source and "from the cache" in again["stretch"].source
    assert not np.array_equal(loaded_pixels(crop), loaded_pixels(stretch))
    for resize, data in again.items():
        assert np.array_equal(loaded_pixels(data), fresh_pixels(data, resize))
    assert cache_of(photos, "data.image_size=8", "data.resize=crop") != cache_of(
        photos, "data.image_size=8", "data.resize=stretch"
    )


def test_an_images_file_replaced_under_its_manifest_is_not_used(photos, monkeypatch, caplog):
    """Another process's pixels (same shape, other settings) put where the manifest's file is: decoded again."""
    load(photos, "data.image_size=8", "data.resize=crop")
    load(photos, "data.image_size=8", "data.resize=stretch")
    crop_file = images_file(cache_of(photos, "data.image_size=8", "data.resize=crop"))
    stretch_file = images_file(cache_of(photos, "data.image_size=8", "data.resize=stretch"))
    os.replace(stretch_file, crop_file)
    with caplog.at_level(logging.WARNING):
        data = load(photos, "data.image_size=8", "data.resize=crop")
    assert "checksum" in caplog.text and "decoding again" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data, "crop"))


def test_a_damaged_cache_is_decoded_again_never_trained_on(tmp_path, monkeypatch, caplog):
    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    load(root)
    damaged = images_file(cache_of(root))
    with open(damaged, "r+b") as stream:  # random bytes over part of the pixels
        stream.seek(damaged.stat().st_size // 2)
        stream.write(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    calls = counting_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        data = load(root)
    assert len(calls) == 1 and "damaged" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data))
    assert "from the cache" in load(root).source  # and the cache written again is good


def test_a_file_rewritten_with_its_old_size_and_time_is_noticed(tmp_path, monkeypatch, caplog):
    """`cp -p`, `rsync -t`, `touch -r`: same size, same mtime, other pixels."""
    root = tmp_path / "ds"
    for name, level in (("a", 40), ("b", 200)):
        for index in range(5):
            write_image(root / name / f"{index}.bmp", level, fmt="BMP")  # BMP: the size is the shape's
    first = load(root)
    target = root / "a" / "0.bmp"
    before = target.stat()
    time.sleep(0.05)
    write_image(target, 250, fmt="BMP")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    with caplog.at_level(logging.WARNING):
        data = load(root)
    assert "changed since" in caplog.text
    assert np.array_equal(loaded_pixels(data), fresh_pixels(data))
    assert not np.array_equal(loaded_pixels(data), loaded_pixels(first))


def full_disk_for(monkeypatch, folder: Path, after_bytes: int, names: tuple[str, ...] = ("",)) -> None:
    """os.write to a file under `folder` (whose name holds one of `names`) fails with ENOSPC once `after_bytes`
    have been written to such files, as a full disk does."""
    real_write = os.write
    written = [0]
    folder = str(folder.resolve())

    def write(handle, data):
        try:
            target = os.readlink(f"/proc/self/fd/{handle}")
        except OSError:
            target = ""
        if target.startswith(folder) and any(name in Path(target).name for name in names):
            if written[0] + len(data) > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[0] += len(data)
        return real_write(handle, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="finds a descriptor's file in /proc")
@pytest.mark.parametrize("where", ["pixels", "manifest"])
def test_a_full_disk_while_caching_falls_back_to_memory_and_leaves_no_part_files(
    tmp_path, monkeypatch, caplog, where
):
    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    cache = tmp_path / "full"
    if where == "pixels":
        full_disk_for(monkeypatch, cache, after_bytes=2000, names=("images",))
    else:
        full_disk_for(monkeypatch, cache, after_bytes=0, names=("manifest",))
    with caplog.at_level(logging.WARNING):
        data = load(root, f"data.cache={cache}")
    assert "No space left on device" in caplog.text
    expected = fresh_pixels(data)
    assert np.array_equal(loaded_pixels(data), expected)
    assert not [path for path in cache.rglob("*") if path.is_file() and path.name != "files.tsv"], list(
        cache.rglob("*")
    )
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    assert "decoded" in load(root, f"data.cache={cache}").source  # no manifest vouches for anything
    assert torch.equal(load(root, f"data.cache={cache}").pixels["train"], torch.from_numpy(expected))


# --- one writer per run directory, SIGTERM ------------------------------------------------------------

SETS = [
    option
    for item in [*TINY, "log.progress=false", "schedule.name=constant", "train.threads=1"]
    for option in ("--set", item)
]


def kaizen_process(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kaizen", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def wait_for_checkpoint(runs: Path, process: subprocess.Popen, epoch: int = 1, timeout: float = 300) -> Path:
    """The run directory under `runs` once its last.pt holds at least `epoch`."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached its checkpoint"
        for run in runs.glob("*/checkpoints/last.pt"):
            with contextlib.suppress(Exception):
                if last_epoch(run.parent.parent) >= epoch:
                    return run.parent.parent
        time.sleep(0.2)


def last_epoch(run: Path) -> int:
    return int(rundir.load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def test_a_second_resume_of_a_run_in_progress_is_refused_and_a_dead_writers_lock_taken_over(
    tmp_path, monkeypatch, capsys
):
    runs = tmp_path / "runs"
    first = kaizen_process("train", *SETS, "--set", "train.epochs=5000", "--set", f"log.runs_dir={runs}")
    try:
        run = wait_for_checkpoint(runs, first)
        more = last_epoch(run) + 50
        code, _, err = cli(
            monkeypatch, capsys, "train", "--resume", str(run), "--set", f"train.epochs={more}"
        )
        one_line_error(code, err, str(run), "being written by another kaizen process", f"pid {first.pid}")
        assert first.poll() is None and meta(run)["status"] == "running" and meta(run)["pid"] == first.pid
    finally:
        first.kill()  # kill -9: no chance to record anything, its lock stays behind
        first.wait()
    assert json.loads((run / rundir.LOCK_FILE).read_text())["pid"] == first.pid
    kept = last_epoch(run)
    code, _, err = cli(
        monkeypatch, capsys, "train", "--resume", str(run), "--set", f"train.epochs={kept + 1}"
    )
    assert code == 0, err
    assert meta(run)["status"] == "done" and last_epoch(run) == kept + 1
    assert not (run / rundir.LOCK_FILE).exists()


def test_two_locks_of_one_run_directory(tmp_path):
    first, second = rundir.RunLock(), rundir.RunLock()
    first.acquire(tmp_path)
    with pytest.raises(KaizenError, match="being written by another kaizen process"):
        second.acquire(tmp_path)
    first.release()
    second.acquire(tmp_path)
    assert json.loads((tmp_path / rundir.LOCK_FILE).read_text())["pid"] == os.getpid()
    second.release()
    assert not (tmp_path / rundir.LOCK_FILE).exists()


def test_sigterm_stops_a_run_as_ctrl_c_does_and_it_resumes(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    process = kaizen_process("train", *SETS, "--set", "train.epochs=5000", "--set", f"log.runs_dir={runs}")
    try:
        run = wait_for_checkpoint(runs, process)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode()
    assert code == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"kaizen train --resume {run}" in stderr
    record = meta(run)
    assert record["status"] == "stopped" and "interrupted" in record["error"]
    assert kaizen.load_run(run).status == "stopped"
    kept = last_epoch(run)
    assert kept >= 1 and not (run / rundir.LOCK_FILE).exists()
    code, _, err = cli(
        monkeypatch, capsys, "train", "--resume", str(run), "--set", f"train.epochs={kept + 1}"
    )
    assert code == 0, err
    assert meta(run)["status"] == "done"


def process_tree(pid: int) -> list[int]:
    """`pid`'s descendants, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sigterm_to_a_compare_stops_its_runs_and_ends_its_workers(tmp_path):
    out = tmp_path / "study"
    compare = kaizen_process(
        "compare",
        "--out",
        str(out),
        "--vary",
        "optim.lr=0.01,0.02",
        "--seeds",
        "1",
        "--workers",
        "2",
        *SETS,
        "--set",
        "train.epochs=5000",
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while len([path for path in out.rglob("last.pt")]) < 2:
            assert compare.poll() is None, compare.stderr.read().decode()
            assert time.monotonic() < deadline, "the runs never started"
            time.sleep(0.2)
        workers = process_tree(compare.pid)
        os.killpg(compare.pid, signal.SIGTERM)  # what docker stop and Slurm send: every process of the job
        code = compare.wait(timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(compare.pid, signal.SIGKILL)
        compare.wait()
    assert code == 128 + signal.SIGTERM, compare.stderr.read().decode()
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    metas = list(out.rglob("meta.json"))
    assert len(metas) == 2
    for path in metas:
        record = json.loads(path.read_text())
        assert record["status"] == "stopped", record


# --- files written never through a link; doctor --verify resumes -------------------------------------


@pytest.fixture
def finished(tmp_path) -> Path:
    return kaizen.train(tiny_config(tmp_path / "runs", "schedule.name=constant", "train.threads=1")).path


def test_verify_replaces_a_planted_link_instead_of_writing_through_it(finished, tmp_path):
    from kaizen.verify import race

    outside = tmp_path / "precious.txt"
    outside.write_text("not kaizen's")
    (finished / "doctor").mkdir()
    (finished / "doctor" / "verify.png").symlink_to(outside)
    (finished / "doctor" / "verify.json").symlink_to(outside)
    race(finished, overrides=["optim.lr=0.05"])
    assert outside.read_text() == "not kaizen's"
    for name in ("verify.png", "verify.json"):
        written = finished / "doctor" / name
        assert not written.is_symlink() and written.stat().st_size > 0
    assert (finished / "doctor" / "verify.png").read_bytes().startswith(b"\x89PNG")


def test_a_doctor_folder_that_is_a_link_is_refused(finished, tmp_path):
    from kaizen.verify import race

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (finished / "doctor").symlink_to(elsewhere)
    with pytest.raises(KaizenError, match="symbolic link"):
        race(finished, overrides=["optim.lr=0.05"])
    assert not list(elsewhere.iterdir())


def test_a_record_rewritten_in_place_on_a_full_disk_never_writes_through_a_link(tmp_path, monkeypatch):
    outside = tmp_path / "precious.txt"
    outside.write_text("not kaizen's")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").symlink_to(outside)

    def full(path, text):
        raise KaizenError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(rundir, "atomic_write_text", full)
    with pytest.raises(KaizenError, match="cannot write"):
        rundir.write_record(tmp_path / "run" / "meta.json", {"status": "failed"})
    assert outside.read_text() == "not kaizen's"


def test_ctrl_c_in_doctor_verify_then_verify_again_resumes_its_trials(finished, monkeypatch):
    from kaizen.training import loop
    from kaizen.verify import race

    real_fit, calls = loop.fit, []

    def fit(cfg, run_dir=None, resume=False, **kwargs):
        calls.append((cfg.optim.lr, resume))
        if cfg.optim.lr == 0.2 and not resume and len(calls) == 2:  # Ctrl-C in the second trial's first epoch

            def stop(epoch, metrics):
                raise KeyboardInterrupt

            kwargs["on_epoch"] = stop
        return real_fit(cfg, run_dir=run_dir, resume=resume, **kwargs)

    monkeypatch.setattr(loop, "fit", fit)
    with pytest.raises(KeyboardInterrupt):
        race(finished, overrides=["optim.lr=0.05", "optim.lr=0.2"])
    assert calls == [(0.05, False), (0.2, False)]
    result = race(finished, overrides=["optim.lr=0.05", "optim.lr=0.2"])
    assert calls[2:] == [(0.2, True)], "the finished trial is reused, the stopped one resumed"
    assert len(result.ranking) == 3
    trials = [Path(entry.paths[0]) for entry in result.ranking if entry.changes]
    assert all(meta(path)["status"] == "done" for path in trials)
    assert len(list(finished.parent.glob("*-verify*"))) == 2, "no trial was trained twice"


# --- keep.txt names its files -------------------------------------------------------------------------


def folder_sets(root: Path, *overrides: str) -> list[str]:
    items = ["data.name=folder", f"data.path={root}", "data.val_split=0", *overrides]
    return [option for item in items for option in ("--set", item)]


def test_a_keep_file_names_its_files_and_a_renamed_one_is_an_error(tmp_path, monkeypatch, capsys):
    from kaizen.audit.report import write_keep

    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    data = load(root)
    keep = tmp_path / "audit" / "keep.txt"
    keep.parent.mkdir()
    dropped = {0, 5}
    write_keep(keep, len(data.y_train), dropped, data.paths["train"], root)
    names = keep.read_text().splitlines()[1:]
    assert all(not name.startswith("/") and (root / name).is_file() for name in names)
    kept = load(root, f"data.keep={keep}")
    assert kept.paths["train"] == [p for i, p in enumerate(data.paths["train"]) if i not in dropped]
    # one file renamed: the same number of files, so row numbers would now name other images
    victim = Path(kept.paths["train"][2])
    victim.rename(victim.with_name("renamed.png"))
    relative = victim.relative_to(root).as_posix()
    code, _, err = cli(monkeypatch, capsys, "data", *folder_sets(root, f"data.keep={keep}"))
    one_line_error(code, err, str(keep), relative, "not a training file of this data")
    code, _, err = cli(monkeypatch, capsys, "train", *SETS, *folder_sets(root, f"data.keep={keep}"))
    one_line_error(code, err, str(keep), relative)


def test_an_older_keep_file_of_row_numbers_is_refused_for_files_and_read_for_arrays(
    tmp_path, monkeypatch, capsys
):
    root = make_classes(tmp_path / "ds", {"a": 8, "b": 8})
    keep = tmp_path / "keep.txt"
    keep.write_text("".join(f"{row}\n" for row in range(25)))
    code, _, err = cli(monkeypatch, capsys, "data", *folder_sets(root, f"data.keep={keep}"))
    one_line_error(code, err, str(keep), "row numbers only", "kaizen audit --fix")
    digits = load_data(kaizen.Config().override([f"data.keep={keep}", "data.val_split=0"]).data)
    assert len(digits.y_train) == 25  # an array's rows are all that name its examples


# --- a class that cannot be learned -------------------------------------------------------------------


def test_a_class_whose_training_images_all_fail_is_an_error_when_tested(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    make_classes(root / "train", {"a": 6, "b": 6})
    make_classes(root / "test", {"a": 2, "b": 2, "c": 3})
    (root / "train" / "c").mkdir()
    for index in range(3):  # its training files are all broken: every image of class c is in test/
        (root / "train" / "c" / f"{index}.png").write_bytes(b"not a png")
    for command in (["data"], ["train", *SETS]):
        code, _, err = cli(monkeypatch, capsys, *command, *folder_sets(root))
        one_line_error(code, err, "class 'c' has no training example", "3 in test", "cannot learn")


def test_a_class_with_no_example_anywhere_is_a_warning(tmp_path, monkeypatch, capsys, caplog):
    root = tmp_path / "ds"
    make_classes(root / "train", {"a": 6, "b": 6})
    make_classes(root / "test", {"a": 2, "b": 2})
    (root / "train" / "c").mkdir()
    (root / "train" / "c" / "0.png").write_bytes(b"not a png")
    for command in (["data"], ["train", *SETS, "--quiet"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = cli(monkeypatch, capsys, *command, *folder_sets(root))
        assert code == 0, err
        assert "class 'c' has no example" in caplog.text, command
