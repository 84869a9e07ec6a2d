"""Fault injection: each bad input or fault a user (or the machine) inflicts, as a user meets it.

Every case checks the exit code, that no traceback is printed, the one line that names the culprit, and the
run directory afterwards: nothing already written is lost and its status is true.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli, one_line_error, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaizen
from kaizen.config import valid_keys
from kaizen.track import rundir
from kaizen.training import distributed, loop

TINY_SETS = [option for item in [*TINY, "log.progress=false"] for option in ("--set", item)]


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def last_epoch(run: Path) -> int:
    return int(rundir.load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])


def only_run(runs: Path) -> Path:
    (path,) = runs.iterdir()
    return path


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch tiny run at a constant rate (read only by the tests that use it)."""
    return kaizen.train(tiny_config(tmp_path_factory.mktemp("two") / "runs", "schedule.name=constant")).path


def refuse_writes_under(monkeypatch, folder: Path, code: int) -> None:
    """Make every new file under `folder` fail with `code` (EROFS: a read-only filesystem; ENOSPC: a full
    disk), as the kernel does; files already there can still be read, and rewritten in place."""
    folder = folder.resolve()
    real_mkstemp, real_open, real_unlink, real_os_open = tempfile.mkstemp, Path.open, Path.unlink, os.open

    def refused(path: Path | str) -> bool:
        return Path(path).resolve().is_relative_to(folder)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and refused(dir):
            raise OSError(code, os.strerror(code), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def open_(self, mode="r", *args, **kwargs):
        if "x" in mode and refused(self):
            raise OSError(code, os.strerror(code), str(self))
        return real_open(self, mode, *args, **kwargs)

    def unlink(self, missing_ok=False):
        if code == errno.EROFS and refused(self):  # a read-only filesystem refuses even a missing file's
            raise OSError(code, os.strerror(code), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    def os_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and refused(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(Path, "open", open_)
    monkeypatch.setattr(Path, "unlink", unlink)


# --- unwritable places --------------------------------------------------------------------------------


def test_eval_of_a_run_on_a_read_only_filesystem_is_one_line(monkeypatch, capsys, two_epochs):
    before = {path: path.read_bytes() for path in two_epochs.rglob("*") if path.is_file()}
    refuse_writes_under(monkeypatch, two_epochs, errno.EROFS)

    code, _, err = cli(monkeypatch, capsys, "eval", str(two_epochs))

    one_line_error(code, err, "cannot write", str(two_epochs), "Read-only file system")
    assert {path: path.read_bytes() for path in two_epochs.rglob("*") if path.is_file()} == before


def test_resume_of_a_run_on_a_read_only_filesystem_is_one_line(monkeypatch, capsys, two_epochs):
    before = {path: path.read_bytes() for path in two_epochs.rglob("*") if path.is_file()}
    refuse_writes_under(monkeypatch, two_epochs, errno.EROFS)

    code, _, err = cli(monkeypatch, capsys, "train", "--resume", str(two_epochs), "--set", "train.epochs=3")

    one_line_error(code, err, "cannot write", str(two_epochs), "Read-only file system")
    assert {path: path.read_bytes() for path in two_epochs.rglob("*") if path.is_file()} == before


def test_a_full_disk_fails_the_run_with_the_reason_and_keeps_the_last_checkpoint(
    monkeypatch, capsys, tmp_path
):
    runs = tmp_path / "runs"
    real_save = rundir.save_checkpoint
    saved = []

    def save_then_fill(path: Path, state: dict) -> None:  # the disk fills once epoch 1's last.pt is down
        real_save(path, state)
        saved.append(state["epoch"])
        if path.name == "last.pt" and state["epoch"] == 1:
            refuse_writes_under(monkeypatch, runs, errno.ENOSPC)

    monkeypatch.setattr(rundir, "save_checkpoint", save_then_fill)
    code, _, err = cli(
        monkeypatch, capsys, "train", *TINY_SETS, "--set", "train.epochs=3", "--set", f"log.runs_dir={runs}"
    )

    one_line_error(code, err, "No space left on device")
    run = only_run(runs)
    record = meta(run)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert last_epoch(run) == 1  # the last good checkpoint, whole
    monkeypatch.undo()
    resumed = kaizen.resume(run)  # space is back: the run continues
    assert resumed.summary["epochs_completed"] == 3 and meta(run)["status"] == "done"


def test_augment_preview_into_a_file_as_folder_is_one_line(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "passwd"
    blocker.write_text("a file, not a folder")

    code, _, err = cli(
        monkeypatch, capsys, "augment-preview", "--set", "augment=kaggle", "--out", str(blocker / "x.png")
    )

    one_line_error(code, err, str(blocker / "x.png"))
    assert blocker.read_text() == "a file, not a folder"


def test_data_parallel_training_into_an_unwritable_place_is_refused_before_launching(
    monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(distributed, "cpu_cores", lambda: 2)
    monkeypatch.setattr(distributed, "launch", lambda *args: pytest.fail("launched"))
    blocker = tmp_path / "passwd"
    blocker.write_text("")

    code, _, err = cli(
        monkeypatch, capsys, "train", "--devices", "2", *TINY_SETS, "--set", f"log.runs_dir={blocker / 'x'}"
    )

    one_line_error(code, err, str(blocker), "not a folder")


# --- bad config files -------------------------------------------------------------------------------


def test_a_picture_given_as_config_is_one_line(monkeypatch, capsys, tmp_path):
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")

    code, _, err = cli(monkeypatch, capsys, "train", "-c", str(picture))

    one_line_error(code, err, str(picture), "not a YAML config")


def test_a_folder_given_as_config_says_so(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "train", "-c", str(tmp_path))
    one_line_error(code, err, str(tmp_path), "is a folder")


def test_an_empty_config_and_a_repeated_key_are_warned_about(monkeypatch, capsys, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("optim:\n  lr: 0.1\noptim:\n  lr: 0.2\n")

    code, out, err = cli(monkeypatch, capsys, "config", "show", "-c", str(empty))
    assert code == 0 and err == f"warning: {empty} is empty: it is the default config\n"
    code, out, err = cli(monkeypatch, capsys, "config", "show", "-c", str(repeated))
    assert code == 0 and "lr: 0.2" in out
    assert err == f"warning: {repeated}: line 3: 'optim' is given twice; the last one counts\n"


# --- interrupts ---------------------------------------------------------------------------------------


def interrupt_at_first_evaluation(monkeypatch) -> None:
    """Ctrl-C at the end of epoch 1's training steps, before anything of epoch 1 is kept."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate_shared", interrupted)


def test_ctrl_c_in_the_first_epoch_resumes_to_the_uninterrupted_run(monkeypatch, capsys, tmp_path):
    cfg = tiny_config(tmp_path / "whole", "train.epochs=2", "model.dropout=0.2", "schedule.name=cosine")
    whole = kaizen.train(cfg)
    runs = tmp_path / "cut"
    interrupt_at_first_evaluation(monkeypatch)

    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        "--set",
        "model.dropout=0.2",
        "--set",
        "schedule.name=cosine",
        "--set",
        f"log.runs_dir={runs}",
    )

    run = only_run(runs)
    assert code == 130 and "Traceback" not in err
    assert err.strip() == (
        f"interrupted: {run} keeps its initial state in checkpoints/last.pt; "
        f"continue with kaizen train --resume {run}"
    )
    assert meta(run)["status"] == "stopped" and last_epoch(run) == 0
    monkeypatch.undo()
    resumed = kaizen.resume(run)
    assert resumed.summary["test"] == whole.summary["test"]
    assert scores(resumed) == scores(whole)


def scores(run: kaizen.Run) -> list[tuple]:
    return [(row["epoch"], row["split"], row["loss"], row["acc"], row["lr"]) for row in run.metrics()]


def test_a_run_interrupted_while_drawing_its_pictures_is_not_done(monkeypatch, tmp_path):
    from kaizen.track import plots

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "plot_curves", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kaizen.train(tiny_config(tmp_path / "runs", "log.plots=true"))
    run = only_run(tmp_path / "runs")
    record = meta(run)
    assert record["status"] == "stopped" and "pictures" in record["error"]
    assert not (run / "curves.png").exists()
    monkeypatch.undo()

    kaizen.resume(run)  # draws them

    assert meta(run)["status"] == "done" and (run / "curves.png").is_file()
    assert (run / "gradients.png").is_file() and (run / "activations.png").is_file()


# --- what a resume may change -------------------------------------------------------------------------


@pytest.fixture
def constant_run(tmp_path) -> Path:
    return kaizen.train(tiny_config(tmp_path / "runs", "schedule.name=constant")).path


def test_resume_refuses_a_key_the_checkpoint_trained_without(monkeypatch, capsys, constant_run):
    config_before = (constant_run / "config.yaml").read_text()

    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--resume",
        str(constant_run),
        "--set",
        "train.epochs=4",
        "--set",
        "optim.lr=0.5",
    )

    one_line_error(code, err, "--resume cannot change optim.lr (0.001 -> 0.5)")
    assert (constant_run / "config.yaml").read_text() == config_before
    assert meta(constant_run)["status"] == "done"


def test_extending_a_finished_cosine_run_is_refused_with_the_reason(monkeypatch, capsys, tmp_path):
    run = kaizen.train(tiny_config(tmp_path / "runs", "schedule.name=cosine")).path

    code, _, err = cli(monkeypatch, capsys, "train", "--resume", str(run), "--set", "train.epochs=4")

    one_line_error(code, err, "train.epochs from 2 to 4", "schedule.name=cosine", "spreads over train.epochs")


def test_resume_records_what_it_changed_and_its_timings_add_up_every_session(constant_run):
    first = json.loads((constant_run / "summary.json").read_text())["timings"]["train_seconds"]

    run = kaizen.resume(constant_run, ["train.epochs=4", "log.plots=true"])

    (session,) = meta(run.path)["resumed"]
    assert session["from_epoch"] == 2
    assert session["changed"] == {"train.epochs": [2, 4], "log.plots": [False, True]}
    assert run.config.train.epochs == 4 and run.config.log.plots
    train_rows = [row["seconds"] for row in run.metrics() if row["split"] == "train"]
    assert len(train_rows) == 4
    timings = run.summary["timings"]
    assert timings["train_seconds"] == pytest.approx(sum(train_rows), abs=1e-2)
    assert timings["train_seconds"] > first


# --- a killed compare ---------------------------------------------------------------------------------

PARENT = """
import sys
from pathlib import Path
import kaizen
from kaizen.study.backends import _run_in_pool
out = Path(sys.argv[1])
config = kaizen.Config().override([*sys.argv[2:], f"log.runs_dir={out}"]).to_dict()
jobs = [{"variant": "v", "seed": seed, "path": str(out / f"seed{seed}"), "config": config} for seed in (0, 1)]
for result in _run_in_pool(jobs, workers=2, threads=1):
    print(result, flush=True)
"""


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_killing_a_compare_ends_its_workers_and_their_runs_say_stopped(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "study"
    for seed in (0, 1):
        (out / f"seed{seed}" / "checkpoints").mkdir(parents=True)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(out), *TINY, "train.epochs=500", "log.progress=false"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while not all((out / f"seed{seed}" / "meta.json").is_file() for seed in (0, 1)):
            assert parent.poll() is None and time.monotonic() < deadline, "the runs never started"
            time.sleep(0.2)
        workers = children(parent.pid)
        assert len(workers) >= 2  # two workers (and multiprocessing's resource tracker)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert not [pid for pid in workers if alive(pid)], "a worker outlived its compare"
    for seed in (0, 1):
        record = meta(out / f"seed{seed}")
        assert record["status"] == "stopped", record


# --- results independent of the layout ----------------------------------------------------------------


def test_a_run_records_the_thread_count_it_trained_with(constant_run):
    assert kaizen.load_run(constant_run).config.train.threads == torch.get_num_threads() == 1


@pytest.mark.parametrize("threads", [None, 2])
def test_every_layout_of_a_study_trains_with_the_configured_threads(monkeypatch, threads):
    from kaizen.study import backends

    monkeypatch.setattr(backends, "usable_cores", lambda: 8)
    config = kaizen.Config().override([*TINY, f"train.threads={threads or 'null'}"]).to_dict()
    placements = [
        backends.LocalBackend().place([config] * 8, workers, threads) for workers in (None, 1, 2, 8)
    ]
    assert {placement.threads for placement in placements} == {threads or 1}
    assert placements[0].workers == 8 // (threads or 1)


# --- batches too small to train on ----------------------------------------------------------------------


def test_a_compare_with_a_batch_of_one_is_refused_before_any_run(monkeypatch, capsys, tmp_path):
    out = tmp_path / "study"

    code, _, err = cli(
        monkeypatch,
        capsys,
        "compare",
        *TINY_SETS,
        "--vary",
        "train.batch_size=32,1",
        "--seeds",
        "1",
        "--out",
        str(out),
    )

    one_line_error(code, err, "train.batch_size = 1", "at least 2 examples", "batch norm")
    assert not out.exists()


def test_a_fraction_that_leaves_one_example_says_so(monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        monkeypatch,
        capsys,
        "train",
        *TINY_SETS,
        "--set",
        "data.fraction=0.001",
        "--set",
        f"log.runs_dir={tmp_path / 'runs'}",
    )

    one_line_error(
        code, err, "the training split holds 1 example (data.fraction = 0.001)", "raise data.fraction"
    )


def test_a_data_set_of_one_class_is_refused_before_any_run(monkeypatch, capsys, tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((40, 8, 8), dtype=np.uint8), y=np.full(40, 3))
    runs = tmp_path / "runs"
    code, _, err = cli(
        monkeypatch, capsys, "train", *TINY_SETS, "--set", "data.name=npz", "--set", f"data.path={path}",
        "--set", f"log.runs_dir={runs}",
    )  # fmt: skip
    one_line_error(code, err, "every training example is of class '3'", "at least two classes")
    assert not runs.exists()


# --- random input never gives a traceback -------------------------------------------------------------


KEYS = st.one_of(st.sampled_from(valid_keys()), st.text(min_size=1, max_size=20))
YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_subnormal=False),
    st.text(max_size=12),
)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, st.one_of(st.text(max_size=20), YAML_VALUES.map(str))), max_size=4))
def test_random_overrides_are_accepted_or_refused_in_one_line(assignments):
    overrides = [f"{key}={value}" for key, value in assignments]
    try:
        kaizen.Config().override(overrides)
    except kaizen.KaizenError as error:
        assert "\n" not in str(error).strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(st.text(max_size=200), st.dictionaries(st.sampled_from(valid_keys()), YAML_VALUES, max_size=4))
)
def test_random_yaml_files_are_accepted_or_refused_in_one_line(monkeypatch, capsys, tmp_path, content):
    import yaml

    path = tmp_path / "random.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))

    code, _, err = cli(monkeypatch, capsys, "config", "show", "-c", str(path))

    assert "Traceback" not in err
    if code:
        one_line_error(code, err)


# --- offline, and what downloads leave -------------------------------------------------------------------


def test_summary_of_an_mnist_config_downloads_nothing(monkeypatch, capsys, tmp_path):
    from kaizen.data import download

    monkeypatch.setattr(download, "download_file", lambda *args, **kwargs: pytest.fail("downloaded"))
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "configs" / "kaggle_cnn.yaml"

    code, out, err = cli(monkeypatch, capsys, "summary", "-c", str(config))

    assert code == 0, err
    assert "input 1×28×28 · 10 classes" in out
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_leaves_no_empty_folders_and_a_good_one_umask_permissions(tmp_path):
    import gzip
    import hashlib

    from kaizen.data import download

    with pytest.raises(kaizen.KaizenError, match="could not download"):
        download.download_dataset(
            "mnist",
            tmp_path / "data" / "mnist",
            mirrors=[(tmp_path / "nowhere").as_uri()],
            retries=1,
            backoff=0,
        )
    assert list(tmp_path.iterdir()) == []

    served = tmp_path / "mirror"
    served.mkdir()
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"labels"))
    digest = hashlib.md5((served / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    got = download.download_file("t10k-labels-idx1-ubyte.gz", tmp_path / "data", [served.as_uri()], digest)
    umask = os.umask(0o022)
    os.umask(umask)
    assert got.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_run_whose_process_was_killed_reads_running_or_killed(constant_run):
    import subprocess
    import sys

    record = meta(constant_run)
    assert record["pid"] == os.getpid()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (constant_run / "meta.json").write_text(
        json.dumps({**record, "status": "running", "pid": int(gone.stdout)})
    )

    assert kaizen.load_run(constant_run).status == "running or killed: no live process"
