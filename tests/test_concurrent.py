"""Several runs at once and the study's aggregate throughput: runs per hour of wall clock and the runs' own
times, measured (never made up), printed, and kept in throughput.json and the report; workers per GPU."""

from __future__ import annotations

import json
import re
import time
import types

import pytest
from conftest import cli

import kaizen
from kaizen.errors import KaizenError
from kaizen.study import backends, compare_plan, run_plan
from kaizen.study.backends import WORKERS_PER_GPU, LocalBackend

TINY = [
    "model.preset=mlp",
    "model.hidden=[32]",
    "train.epochs=2",
    "log.plots=false",
    "train.device=cpu",
    "train.threads=1",
]
TINY_SETS = [option for item in TINY for option in ("--set", item)]


def test_compare_reports_runs_per_hour_from_measured_times(monkeypatch, capsys, tmp_path):
    out = tmp_path / "study"
    began = time.perf_counter()
    code, stdout, err = cli(
        monkeypatch, capsys, "compare", "--vary", "optim.lr=0.1,0.05", "--seeds", "2", "--workers", "1",
        "--out", str(out), *TINY_SETS,
    )  # fmt: skip
    elapsed = time.perf_counter() - began
    assert code == 0, err
    record = json.loads((out / "throughput.json").read_text())
    assert record["runs_finished"] == 4 and record["runs_failed"] == 0 and record["backend"] == "local"
    # The wall clock is the session's own, inside what this test measured around it ...
    assert 0 < record["wall_seconds"] <= elapsed
    rounding = 0.0005 / record["wall_seconds"]  # wall_seconds is kept to 3 decimals, runs_per_hour from the raw
    assert record["runs_per_hour"] == pytest.approx(4 * 3600 / record["wall_seconds"], rel=rounding + 1e-4)
    # ... the runs' own times add up the progress lines, and each covers at least the run's training.
    shown = [float(seconds) for seconds in re.findall(r"done in ([\d.]+)s", err)]
    assert len(shown) == 4 and record["run_seconds"] == pytest.approx(sum(shown), abs=0.05 * 4)
    trained = sum(
        json.loads(path.read_text())["timings"]["train_seconds"]
        for path in out.glob("runs/*/seed*/summary.json")
    )
    assert trained <= record["run_seconds"] <= record["wall_seconds"] + 0.01  # one at a time: within the wall
    # each of the three numbers is rounded to 3 decimals
    assert record["concurrency"] == pytest.approx(
        record["run_seconds"] / record["wall_seconds"], rel=3 * rounding, abs=1e-3
    )
    line = (
        f"4 run(s) in {record['wall_seconds']:.1f} s of wall clock = {record['runs_per_hour']:.0f} runs/hour"
    )
    assert f"throughput: {line}" in err
    assert line in (out / "report.md").read_text() and line in (out / "report.html").read_text()

    # Resumed with nothing left to run: the last session that ran something stays on record.
    before = (out / "throughput.json").read_bytes()
    outcome = run_plan(compare_plan(kaizen.Config().override(TINY), ["optim.lr=0.1,0.05"], seeds=2), out, 1)
    assert (outcome.ran, outcome.skipped, outcome.throughput) == (0, 4, None)
    assert (out / "throughput.json").read_bytes() == before


@pytest.mark.parametrize(
    ("device", "gpus", "asked", "expected"),
    [
        ("auto", 2, None, (min(16, 2 * WORKERS_PER_GPU), 2, 2 / (2 * WORKERS_PER_GPU))),
        ("cuda", 1, 3, (3, 1, 1 / 3)),
        ("auto", 0, None, (16, 0, 0.0)),  # no GPU here: one worker per core
        ("cpu", 2, None, (16, 0, 0.0)),  # CPU runs on a GPU machine
    ],
)
def test_local_workers_share_gpus(monkeypatch, device, gpus, asked, expected):
    monkeypatch.setattr(backends, "usable_cores", lambda: 16)
    monkeypatch.setattr(backends, "_local_gpus", lambda: gpus)
    configs = [kaizen.Config().override([*TINY, f"train.device={device}"]).to_dict()] * 20
    placement = LocalBackend().place(configs, asked, None)
    assert (placement.workers, placement.gpus, placement.gpu_share) == pytest.approx(expected)
    assert placement.threads == 1  # train.threads unset: one thread per run, whatever the layout
    assert ("GPU" in placement.where) == (expected[1] > 0)


def test_gpu_runs_spread_round_robin_over_the_gpus():
    jobs = [{"variant": "v", "seed": seed, "path": "", "config": {}} for seed in range(5)]
    runs = LocalBackend().run(jobs, backends.Placement(workers=1, threads=1, gpu_share=0.5, gpus=2))
    assert [job["gpu"] for job in jobs] == [0, 1, 0, 1, 0]
    runs.close()  # nothing started: the generator had not begun


class FakeRay(types.SimpleNamespace):
    """Just enough of a connected Ray to see what each task asks for."""

    def __init__(self, resources):
        super().__init__(asked=[])
        self.resources = resources

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return self.resources

    def wait(self, waiting, num_returns):
        return [], []

    def remote(self, **options):
        fake = self

        class Task:
            def options(self, **resources):
                fake.asked.append(resources)
                return self

            def remote(self, job):
                return job["seed"]

        return lambda function: Task()


def test_ray_tasks_ask_for_threads_and_a_share_of_a_gpu(monkeypatch):
    from kaizen.study import ray_backend

    fake = FakeRay({"CPU": 32, "GPU": 2})
    monkeypatch.setattr(ray_backend, "import_ray", lambda: fake)
    backend = ray_backend.RayBackend()
    configs = [
        kaizen.Config().override([*TINY, f"train.device={d}", "train.threads=2"]).to_dict()
        for d in ("auto", "cpu")
    ]
    placement = backend.place(configs, 4, 2)
    assert (placement.threads, placement.gpu_share) == (2, 0.25) and "1/4 GPU per run" in placement.where
    jobs = [
        {"variant": "v", "seed": seed, "path": "", "config": config} for seed, config in enumerate(configs)
    ]
    # The fake's wait finishes nothing: only what each submission asked for counts.
    assert list(backend.run(jobs, placement)) == []
    assert fake.asked == [{"num_cpus": 2, "num_gpus": 0.25}, {"num_cpus": 2, "num_gpus": 0}]

    fake.resources = {"CPU": 32}
    with pytest.raises(KaizenError, match="cluster has no GPUs"):
        backend.place([kaizen.Config().override([*TINY, "train.device=cuda"]).to_dict()], None, None)
