"""Shared fixtures: tiny configs that train in a fraction of a second on the bundled digits set."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import kaizen
from kaizen.cli import main

# An MLP with one hidden layer of 32 units on 8x8 digits: ~2.5k parameters, ~0.1 s per epoch on one thread.
TINY = ["model.preset=mlp", "model.hidden=[32]", "train.epochs=2", "train.device=cpu", "log.plots=false"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Train on one CPU thread: tiny models are far faster (and the numbers reproducible) that way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(runs_dir: Path, *overrides: str) -> kaizen.Config:
    """The tiny digits MLP writing its runs under `runs_dir`, with `overrides` applied last."""
    return kaizen.Config().override([*TINY, f"log.runs_dir={runs_dir}", *overrides])


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., kaizen.Config]:
    """`make_config("optim.lr=0.01", ...)`: the tiny config with runs under this test's tmp_path/runs."""
    return lambda *overrides: tiny_config(tmp_path / "runs", *overrides)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[kaizen.Config, kaizen.Run]:
    """(config, run) of one finished 3-epoch run with plots on, shared by tests that only read it."""
    cfg = tiny_config(tmp_path_factory.mktemp("finished") / "runs", "train.epochs=3", "log.plots=true")
    return cfg, kaizen.train(cfg)


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `kaizen *args` in this process, as a user would; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["kaizen", *args])
    try:
        main()
        code = 0
    except SystemExit as exited:
        code = exited.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *culprits: str) -> str:
    """Assert exit code 2 and a single `error:` line (no traceback) holding every culprit; return the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for culprit in culprits:
        assert culprit in lines[0], lines[0]
    return lines[0]
