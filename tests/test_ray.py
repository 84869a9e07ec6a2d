"""compare/study on Ray (`--backend ray`): against a Ray head this module starts (`ray start --head`, two CPUs,
on localhost) and stops by its pid. The Ray backend must leave the same study directory, and the same
numbers, as the local process pool; bad backend input is one line and exit code 2, fast."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import cli, one_line_error

TINY = [
    "model.preset=mlp",
    "model.hidden=[32]",
    "train.epochs=2",
    "model.norm=none",
    "log.plots=false",
    "train.device=cpu",
    "train.threads=1",
    "optim.name=sgd",
    "optim.lr=0.1",
]
TINY_SETS = [option for item in TINY for option in ("--set", item)]
COMPARE = ["compare", "--vary", "model.activation=relu,tanh", "--seeds", "2", *TINY_SETS]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """The address of a Ray head started for this module (token authentication off, as on a private host)."""
    pytest.importorskip("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="kzray", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = Path(sys.executable).with_name("ray")
    command = [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0"]
    command += ["--node-ip-address=127.0.0.1", f"--ray-client-server-port={free_port()}"]
    command += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    log = open(Path(temp) / "ray-start.log", "w")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this process is the driver
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"ray start did not come up: {(Path(temp) / 'ray-start.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        head.terminate()  # ray start --block stops the processes it started
        try:
            head.wait(timeout=45)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous
        shutil.rmtree(temp, ignore_errors=True)


def tree(study: Path) -> set[str]:
    """The study's files by relative path (TensorBoard event files named without their time, host and pid)."""
    names = set()
    for path in study.rglob("*"):
        if path.is_file():
            relative = path.relative_to(study).as_posix()
            if path.name.startswith("events.out.tfevents"):
                relative = str(Path(relative).parent / "events.out.tfevents")
            names.add(relative)
    return names


def test_ray_backend_writes_the_same_study_as_the_local_pool(monkeypatch, capsys, tmp_path, ray_head):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    code, _, err = cli(monkeypatch, capsys, *COMPARE, "--workers", "1", "--out", str(local))
    assert code == 0, err
    code, out, err = cli(
        monkeypatch, capsys, *COMPARE, "--backend", "ray", "--address", ray_head, "--out", str(on_ray)
    )
    assert code == 0, err
    assert f"on Ray ({ray_head}, 2 CPUs): 1 CPU(s) per run" in err
    assert "throughput: 4 run(s)" in err and "report:" in out

    assert tree(on_ray) == tree(local)
    assert len(list(on_ray.glob("runs/*/seed*/summary.json"))) == 4
    # Same seeds, same single thread, same CPU: the numbers match exactly, run by run and per variant.
    for summary in local.glob("runs/*/seed*/summary.json"):
        twin = on_ray / summary.relative_to(local)
        assert json.loads(twin.read_text())["test"] == json.loads(summary.read_text())["test"]
        assert json.loads((twin.parent / "meta.json").read_text())["status"] == "done"
    rows = {name: list(csv.DictReader(open(name / "results.csv"))) for name in (local, on_ray)}
    columns = ("variant", "runs_done", "mean", "std", "p", "p_adj")
    assert [[row[c] for c in columns] for row in rows[on_ray]] == [
        [row[c] for c in columns] for row in rows[local]
    ]
    record = json.loads((on_ray / "throughput.json").read_text())
    assert record["backend"] == "ray" and record["runs_finished"] == 4

    # Resuming on Ray: nothing left to run, nothing rerun.
    code, _, err = cli(
        monkeypatch, capsys, *COMPARE, "--backend", "ray", "--address", ray_head, "--out", str(on_ray)
    )
    assert code == 0 and "0 to run, 4 finished earlier" in err


def test_an_address_where_nothing_answers_fails_fast(monkeypatch, capsys, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{free_port()}"  # free: nothing listens there
    began = time.monotonic()
    code, _, err = cli(
        monkeypatch, capsys, *COMPARE, "--backend", "ray", "--address", address, "-o", str(tmp_path / "s")
    )
    one_line_error(code, err, address, "nothing answers", "ray start --head")
    assert time.monotonic() - began < 10
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("options", "culprits"),
    [
        (["--backend", "dask"], ["--backend must be local or ray, not 'dask'"]),
        (["--address", "127.0.0.1:6379"], ["--address applies only to --backend ray"]),
    ],
)
def test_bad_backend_options_are_one_line(monkeypatch, capsys, tmp_path, options, culprits):
    code, _, err = cli(monkeypatch, capsys, *COMPARE, *options, "--out", str(tmp_path / "s"))
    one_line_error(code, err, *culprits)
    assert not (tmp_path / "s").exists()


def test_a_malformed_address_is_one_line(monkeypatch, capsys, tmp_path):
    pytest.importorskip("ray")
    code, _, err = cli(
        monkeypatch, capsys, "study", "optimizers", "--backend", "ray", "--address", "headnode"
    )
    one_line_error(code, err, "--address 'headnode' is not host:port")


def test_backend_ray_without_ray_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    code, _, err = cli(monkeypatch, capsys, *COMPARE, "--backend", "ray", "--out", str(tmp_path / "s"))
    one_line_error(code, err, "--backend ray", 'pip install "kaizen[ray]"')
    assert not (tmp_path / "s").exists()


IMPROVE = [
    "improve",
    "--budget",
    "10x",  # in runs of the start: the first round (one run, a race of one, two confirmations) always fits
    "--candidates",
    "1",
    *TINY_SETS,
    "--set",
    "reg.l2=1.0",  # a strong penalty that improve moves back: its first round races and confirms
]


def test_improve_on_ray_races_and_decides_as_on_the_local_pool(monkeypatch, capsys, tmp_path, ray_head):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    code, _, err = cli(monkeypatch, capsys, *IMPROVE, "--out", str(local))
    assert code == 0, err
    code, out, err = cli(
        monkeypatch, capsys, *IMPROVE, "--backend", "ray", "--address", ray_head, "--out", str(on_ray)
    )
    assert code == 0, err
    assert "journal:" in out
    first = [json.loads((folder / "journal.json").read_text())["rounds"][0] for folder in (local, on_ray)]
    # same seeds, same single thread: every run of the first round scores the same, so the race, the
    # confirmation's seeds and the decision are the same wherever the runs executed. (How many seeds the budget
    # pays for is measured in seconds: an 'x' budget may pay for a fourth seed on one backend and not the other.)
    for key in ("candidates", "rungs"):
        assert first[1][key] == first[0][key], key
    for side in ("incumbent", "candidate"):
        ray_runs, local_runs = first[1]["full_length"][side], first[0]["full_length"][side]
        common = set(ray_runs) & set(local_runs)
        assert len(common) >= 3 and all(ray_runs[seed] == local_runs[seed] for seed in common), side
    assert first[1]["decision"]["adopt"] and first[0]["decision"]["adopt"]
    assert {p.relative_to(on_ray) for p in on_ray.glob("round1/**/summary.json")} == {
        p.relative_to(local) for p in local.glob("round1/**/summary.json")
    }


def test_improve_refuses_a_bad_backend_before_claiming_its_directory(monkeypatch, capsys, tmp_path):
    for options, culprit in (
        (["--backend", "dask"], "--backend must be local or ray, not 'dask'"),
        (["--address", "127.0.0.1:6379"], "--address applies only to --backend ray"),
    ):
        code, _, err = cli(monkeypatch, capsys, *IMPROVE, *options, "--out", str(tmp_path / "i"))
        one_line_error(code, err, culprit)
        assert not (tmp_path / "i").exists()
