"""compare, study and datacurve: variants × seeds as run directories, resumable, locked, with sound statistics
and a self-contained report. Tiny digits MLPs (~0.3 s a run) keep the whole file fast."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, one_line_error
from scipy import stats as scipy_stats

import kaizen
from kaizen.errors import KaizenError
from kaizen.study import compare_plan, datacurve_plan, execute, parse_fractions, run_plan, stats, study_plan
from kaizen.study.compare import (
    LOCK_FILE,
    StudyLock,
    Variant,
    expand,
    make_plan,
    parse_vary,
    split_values,
    usable_cores,
)
from kaizen.study.recipes import RECIPES
from kaizen.study.report import write_report
from kaizen.study.results import collect

TINY = [
    "model.preset=mlp",
    "model.hidden=[32]",
    "train.epochs=2",
    "model.norm=none",
    "model.dropout=0",
    "log.plots=false",
    "train.device=cpu",
    "train.threads=1",
    "optim.name=sgd",
    "optim.lr=0.1",
    "schedule.name=constant",
]
TINY_SETS = [option for item in TINY for option in ("--set", item)] + ["--workers", "1"]


def tiny() -> kaizen.Config:
    return kaizen.Config().override(TINY)


def starts(study_dir: Path) -> dict[str, str]:
    """The start time in meta.json of every run directory of a study."""
    return {
        str(meta.parent.relative_to(study_dir)): json.loads(meta.read_text())["start"]
        for meta in sorted(study_dir.glob("runs/*/seed*/meta.json"))
    }


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def study_with_failure(tmp_path_factory) -> tuple[Path, object]:
    """lr 0.1 (baseline), 0.01 and 1e6 (diverges: every seed fails) × 2 seeds, run in this process."""
    out = tmp_path_factory.mktemp("study") / "lr"
    plan = compare_plan(tiny(), ["optim.lr=0.1,0.01,1e6"], seeds=2)
    outcome, report = execute(plan, out, workers=1)
    return out, outcome, report


# --- expansion and validation before any run ------------------------------------------------------------


def test_grid_expands_every_combination_with_stable_ids():
    variants = expand(
        [parse_vary("model.activation=relu,tanh"), parse_vary("optim.lr=0.1,0.01,1e-3")], "grid"
    )
    assert len(variants) == 6
    assert variants[0] == Variant(
        "model.activation=relu+optim.lr=0.1", ("model.activation=relu", "optim.lr=0.1")
    )
    assert variants[-1].id == "model.activation=tanh+optim.lr=1e-3"
    assert len({variant.id for variant in variants}) == 6


def test_one_at_a_time_changes_one_key_against_the_base_and_drops_the_base_value():
    variants = expand(
        [parse_vary("model.activation=relu,tanh"), parse_vary("optim.lr=0.1,0.5")], "one-at-a-time"
    )
    assert [variant.id for variant in variants] == [
        "base",
        "model.activation=relu",
        "model.activation=tanh",
        "optim.lr=0.1",
        "optim.lr=0.5",
    ]
    plan = make_plan(
        tiny(), variants, seeds=2, drop_same_as_baseline=True
    )  # tiny already has relu and lr 0.1
    assert [variant.id for variant in plan.variants] == ["base", "model.activation=tanh", "optim.lr=0.5"]
    assert plan.seeds == [0, 1]


def test_values_split_on_commas_outside_brackets():
    assert split_values("[32],[16,8], [64]") == ["[32]", "[16,8]", "[64]"]
    key, values = parse_vary("model.hidden=[32],[16,8]")
    assert (key, values) == ("model.hidden", ["[32]", "[16,8]"])
    assert [v.id for v in expand([(key, values)])] == ["model.hidden=32", "model.hidden=16-8"]


@pytest.mark.parametrize(
    ("vary", "culprits"),
    [
        ("optim.lrr=0.1,0.2", ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'"]),
        ("optim.lr=0.1,-1", ["optim.lr=-1", "greater than 0"]),
        ("model.activation=relu,relux", ["model.activation=relux", "did you mean 'relu'"]),
        ("optim.lr", ["not of the form"]),
        ("optim.lr=0.1,0.1", ["listed twice"]),
        ("train.seed=1,2", ["--seeds"]),
    ],
)
def test_bad_vary_fails_before_any_run_starts(monkeypatch, capsys, tmp_path, vary, culprits):
    out = tmp_path / "study"
    code, _, err = cli(monkeypatch, capsys, "compare", "--out", str(out), "--vary", vary, *TINY_SETS)
    one_line_error(code, err, *culprits)
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "culprit"),
    [(["--seeds", "0"], "--seeds must be at least 1"), (["--workers", "0"], "--workers must be at least 1")],
)
def test_seeds_and_workers_must_be_positive(monkeypatch, capsys, tmp_path, option, culprit):
    out = tmp_path / "study"
    code, _, err = cli(
        monkeypatch, capsys, "compare", "-o", str(out), "--vary", "optim.lr=0.1,0.2", *TINY_SETS, *option
    )
    one_line_error(code, err, culprit)
    assert not list(out.glob("runs/*/*/meta.json"))


def test_bad_metric_and_mode_are_named():
    with pytest.raises(KaizenError, match="did you mean 'test.acc'"):
        compare_plan(tiny(), ["optim.lr=0.1,0.2"], metric="test.ac")
    with pytest.raises(KaizenError, match="grid or one-at-a-time"):
        compare_plan(tiny(), ["optim.lr=0.1,0.2"], mode="random")


# --- statistics ---------------------------------------------------------------------------------------------


def test_interval_is_the_t_interval():
    values = [0.91, 0.93, 0.94, 0.90]
    spread = stats.describe(values)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = scipy_stats.t.ppf(0.975, 3) * sd / math.sqrt(4)
    assert spread.mean == pytest.approx(mean) and spread.std == pytest.approx(sd)
    assert (spread.ci_low, spread.ci_high) == pytest.approx((mean - half, mean + half))
    assert half == pytest.approx(3.182446 * sd / 2, rel=1e-6)  # t(0.975, 3) from a table
    one = stats.describe([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_welch_matches_the_formula_and_scipy():
    a, b = [0.80, 0.82, 0.85, 0.81], [0.88, 0.90, 0.86]
    t, df, p = stats.welch(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    t_hand = (np.mean(b) - np.mean(a)) / math.sqrt(va + vb)
    df_hand = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert t == pytest.approx(t_hand) and df == pytest.approx(df_hand)
    assert p == pytest.approx(2 * scipy_stats.t.sf(abs(t_hand), df_hand))
    assert p == pytest.approx(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)


def test_paired_test_is_used_when_seeds_match_and_welch_otherwise():
    baseline = {0: 0.80, 1: 0.85, 2: 0.90}
    variant = {0: 0.82, 1: 0.88, 2: 0.91}
    paired = stats.difference(baseline, variant)
    differences = np.array([0.02, 0.03, 0.01])
    t_hand = differences.mean() / (differences.std(ddof=1) / math.sqrt(3))
    assert paired.test == "paired t"
    assert paired.diff == pytest.approx(0.02)
    assert paired.p_value == pytest.approx(2 * scipy_stats.t.sf(t_hand, 2))
    half = scipy_stats.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((0.02 - half, 0.02 + half))
    # the pairing matters: the same values unpaired are far from significant
    unpaired = stats.difference(baseline, {3: 0.82, 4: 0.88, 5: 0.91})
    assert unpaired.test == "Welch t" and unpaired.p_value > 0.5 > paired.p_value


def test_hedges_g_is_cohens_d_with_the_small_sample_correction():
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]
    pooled = math.sqrt((2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 5)
    d = (np.mean(b) - np.mean(a)) / pooled
    assert stats.hedges_g(a, b) == pytest.approx(d * (1 - 3 / (4 * 7 - 9)))


def test_identical_runs_are_no_difference_and_one_seed_has_no_test():
    same = stats.difference({0: 0.9, 1: 0.9}, {0: 0.9, 1: 0.9})
    assert same.p_value == 1.0 and same.diff == 0
    single = stats.difference({0: 0.9}, {0: 0.95})
    assert single.test == "" and math.isnan(single.p_value) and single.diff == pytest.approx(0.05)


# --- running: failure isolation, resume, lock -------------------------------------------------------------


def test_a_failing_variant_is_reported_and_the_others_finish(study_with_failure):
    out, outcome, report = study_with_failure
    assert outcome.ran == 6 and len(outcome.failed) == 2
    results = report.results
    by_id = {variant.id: variant for variant in results.variants}
    assert by_id["optim.lr=0.1"].status == by_id["optim.lr=0.01"].status == "done"
    failed = by_id["optim.lr=1e6"]
    assert failed.status == "failed" and failed.rank is None
    assert failed.errors and all(failed.errors)  # each seed's error, from its meta.json
    assert json.loads((out / "runs/optim.lr=1e6/seed0/meta.json").read_text())["status"] == "failed"
    csv_text = (out / "results.csv").read_text()
    assert re.search(r"optim\.lr=1e6,False,optim\.lr=1e6,failed,0,2,.*\S", csv_text)
    html_text = (out / "report.html").read_text()
    assert "failed" in html_text and html.escape(failed.errors[0]) in html_text
    assert by_id["optim.lr=0.01"].difference.test == "paired t"
    assert [key for key, _, _ in by_id["optim.lr=0.01"].config_diff] == ["optim.lr"]  # the one knob it moved


def test_a_run_that_fails_before_its_record_exists_keeps_its_error(tmp_path):
    out = tmp_path / "study"
    plan = compare_plan(
        tiny(), ["model.norm=none,instance"], seeds=1
    )  # instance norm cannot follow a dense layer
    outcome, report = execute(plan, out, workers=1)
    assert [(event.variant, event.status) for event in outcome.failed] == [("model.norm=instance", "failed")]
    error = json.loads((out / "runs/model.norm=instance/seed0/error.json").read_text())
    assert "instance norm" in error["error"]
    failed = report.results.variants[1]
    assert failed.status == "failed" and "instance norm" in failed.errors[0]
    assert "instance norm" in (out / "report.html").read_text()


def test_report_files_and_a_self_contained_html(study_with_failure):
    out, _, _ = study_with_failure
    for name in ("results.csv", "report.md", "report.html", "bars.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", page, flags=re.IGNORECASE)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<link" not in page and "@import" not in page
    for heading in ("Results", "Figures", "Config difference from the baseline", "Method"):
        assert heading in page
    assert "optim.lr" in page and "Hedges" in page
    markdown = (out / "report.md").read_text()
    assert "![bars.png](bars.png)" in markdown and "| rank |" in markdown


def test_rerun_skips_finished_runs_and_retries_failed_ones(tmp_path):
    out = tmp_path / "study"
    plan = compare_plan(tiny(), ["optim.lr=0.1,0.05"], seeds=2)
    run_plan(plan, out, workers=1)
    before = starts(out)
    # interrupt one run after the fact: it must be the only one trained again
    meta_path = out / "runs/optim.lr=0.05/seed1/meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "status": "stopped", "start": "interrupted"}))
    events = []
    outcome = run_plan(plan, out, workers=1, on_event=events.append)
    assert (outcome.ran, outcome.skipped) == (1, 3)
    assert [(e.variant, e.seed) for e in events if e.status != "skipped"] == [("optim.lr=0.05", 1)]
    after = starts(out)
    assert after["runs/optim.lr=0.05/seed1"] != "interrupted"
    assert {key: value for key, value in after.items() if "0.05/seed1" not in key} == {
        key: value for key, value in before.items() if "0.05/seed1" not in key
    }
    # more seeds later: only the new ones run
    outcome = run_plan(compare_plan(tiny(), ["optim.lr=0.1,0.05"], seeds=3), out, workers=1)
    assert (outcome.ran, outcome.skipped) == (2, 4)


def test_a_directory_of_another_study_is_refused(tmp_path):
    out = tmp_path / "study"
    run_plan(compare_plan(tiny(), ["optim.lr=0.1"], seeds=1), out, workers=1)
    before = snapshot(out)
    other = compare_plan(tiny().override(["train.epochs=3"]), ["optim.lr=0.1"], seeds=1)
    with pytest.raises(KaizenError, match="holds another study.*train.epochs"):
        run_plan(other, out, workers=1)
    assert snapshot(out) == before


def test_a_live_lock_refuses_and_corrupts_nothing(monkeypatch, capsys, tmp_path):
    out = tmp_path / "study"
    run_plan(compare_plan(tiny(), ["optim.lr=0.1"], seeds=1), out, workers=1)
    with StudyLock(out):  # this process is the other, live compare
        before = snapshot(out)
        code, _, err = cli(
            monkeypatch,
            capsys,
            "compare",
            "-o",
            str(out),
            "--vary",
            "optim.lr=0.1",
            "--seeds",
            "1",
            *TINY_SETS,
        )
        one_line_error(code, err, "in use by another compare", "pid")
        assert snapshot(out) == before
    assert not (out / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    import socket

    (out / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    outcome = run_plan(compare_plan(tiny(), ["optim.lr=0.1"], seeds=1), out, workers=1)
    assert outcome.ran == 1 and not outcome.failed
    assert not (out / LOCK_FILE).exists()


# --- doctor in the report -------------------------------------------------------------------------------------


def test_doctor_findings_are_included_and_a_run_it_cannot_read_is_named(monkeypatch, study_with_failure):
    out, _, _ = study_with_failure
    finding = types.SimpleNamespace(severity="warning", title="slow start", evidence="loss flat for 2 epochs")
    monkeypatch.setattr("kaizen.study.report.doctor.diagnose", lambda run_path: [finding])
    write_report(out)
    page = (out / "report.html").read_text()
    assert "slow start" in page and "loss flat for 2 epochs" in page and "2/2" in page

    def unreadable(run_path):
        raise ValueError("stats.jsonl is garbage")

    monkeypatch.setattr("kaizen.study.report.doctor.diagnose", unreadable)  # the report goes on without it
    report = write_report(out)
    assert (
        report.doctor_note.startswith("doctor could not read")
        and "stats.jsonl is garbage" in report.doctor_note
    )
    assert "stats.jsonl is garbage" in (out / "report.html").read_text()


# --- studies and data curves ----------------------------------------------------------------------------------


def test_every_recipe_builds_a_valid_plan_with_the_metric_that_answers_it(monkeypatch, capsys):
    for name, recipe in RECIPES.items():
        plan = study_plan(name, seeds=2)
        assert plan.baseline == recipe.variants[0][0]
        assert len(plan.variants) == len(recipe.variants), name
        assert plan.metric == recipe.metric
    assert study_plan("regularization").metric == "gap"  # the question is the train/validation gap
    optimizers = study_plan("optimizers", seeds=3)
    assert [v.id for v in optimizers.variants] == ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
    assert RECIPES["optimizers"].tune and RECIPES["batch-size"].tune  # each variant at its own tuned rate
    with pytest.raises(KaizenError, match="did you mean 'optimizers'"):
        study_plan("optimizer")
    code, out, _ = cli(monkeypatch, capsys, "study", "--list")
    assert code == 0 and all(name in out for name in RECIPES) and "tunes optim.lr" in out


def test_a_recipe_runs_on_mnist_10k_when_its_files_are_there_and_says_when_it_falls_back(tmp_path):
    empty = study_plan("regularization", overrides=[f"data.root={tmp_path}"])
    assert empty.base.data.name == "digits" and "no mnist IDX files" in empty.description
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    found = study_plan("regularization", overrides=[f"data.root={tmp_path}"])
    assert found.base.data.name == "mnist" and "mnist-10k" in found.description
    assert found.base.data.root == str(tmp_path) and found.base.train.epochs == 30
    chosen = study_plan("regularization", overrides=[f"data.root={tmp_path}", "data.name=digits"])
    assert chosen.base.data.name == "digits"  # the user's choice of data wins


def test_fractions_are_checked():
    assert parse_fractions("1,0.25,0.5") == [0.25, 0.5, 1.0]
    for bad, message in (
        ("0.5", "at least two"),
        ("0,1", "not in"),
        ("a,b", "expected numbers"),
        ("0.5,1.5", "1.5"),
    ):
        with pytest.raises(KaizenError, match=message):
            parse_fractions(bad)


def test_datacurve_in_two_workers_reads_the_curve(tmp_path):
    out = tmp_path / "curve"
    plan = datacurve_plan(tiny().override(["train.epochs=3"]), [0.2, 1.0], seeds=2)
    outcome, report = execute(plan, out, workers=2)
    # cores // workers threads each, but never more than the config's train.threads=1
    assert (outcome.ran, outcome.workers, outcome.threads) == (4, min(2, usable_cores()), 1)
    assert not outcome.failed
    curve = report.curve
    assert [point.fraction for point in curve.points] == [0.2, 1.0]
    assert curve.points[0].examples < curve.points[1].examples
    # two seeds per size: estimates only, no reading of the slope (tests/test_datacurve_reading.py reads it)
    assert (
        curve.rising is None
        and curve.reading.startswith("cannot tell yet")
        and "estimates only" in curve.reading
    )
    assert (out / "datacurve.png").stat().st_size > 0
    assert html.escape(curve.reading) in (out / "report.html").read_text()
    assert collect(out).baseline.id == "fraction=1"


def test_cli_compare_prints_the_table_and_the_report_path(monkeypatch, capsys, tmp_path):
    out = tmp_path / "act"
    code, stdout, err = cli(
        monkeypatch,
        capsys,
        "compare",
        "-o",
        str(out),
        "--vary",
        "model.activation=relu,tanh",
        "--seeds",
        "2",
        *TINY_SETS,
    )
    assert code == 0, err
    assert "model.activation=tanh" in stdout and "report:" in stdout
    assert "[4/4]" in err
    code, stdout, err = cli(
        monkeypatch,
        capsys,
        "compare",
        "-o",
        str(out),
        "--vary",
        "model.activation=relu,tanh",
        "--seeds",
        "2",
        *TINY_SETS,
    )
    assert code == 0 and "skipped 4 finished earlier" in err
