"""kaizen doctor: tiny real runs with a known problem are diagnosed with evidence and fixed by what it recommends;
healthy runs raise no warning; bad input gets one clear line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import cli

import kaizen
from kaizen.doctor import Finding, RunRecord, diagnose, examine, read_run
from kaizen.doctor.findings import kind_table
from kaizen.doctor.report import render_findings
from kaizen.nn import build_model
from kaizen.verify import verify

KAGGLE_CNN = Path(__file__).parents[1] / "configs" / "kaggle_cnn.yaml"
FAST = ["train.device=cpu", "log.tensorboard=false", "log.plots=false", "log.progress=false"]
DEEP_SIGMOID = [
    "model.preset=mlp",
    "model.hidden=[32,32,32,32,32,32]",
    "model.activation=sigmoid",
    "init.weights=normal",
    "init.std=0.01",
    "model.norm=none",
    "model.dropout=0",
    "train.epochs=8",
]
SGD_LR_10 = ["model.preset=mlp", "model.norm=none", "model.dropout=0", "optim.name=sgd", "optim.lr=10"]
OVERFIT = [  # a wide MLP on 200 training images, no regularisation, many epochs at a constant rate
    "model.preset=mlp",
    "model.hidden=[512]",
    "model.norm=none",
    "model.dropout=0",
    "data.fraction=0.155",
    "schedule.name=constant",
    "train.epochs=60",
]
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "gelu", "silu")


def train(runs: Path, *overrides: str, base: kaizen.Config | None = None) -> kaizen.Run:
    cfg = (base or kaizen.Config()).override([*FAST, f"log.runs_dir={runs}", *overrides])
    try:
        return kaizen.train(cfg)
    except kaizen.KaizenError:  # a diverging run stops with an error but leaves its record
        (path,) = sorted(Path(runs).iterdir())[-1:]
        return kaizen.load_run(path)


def detector(code: str):
    """The `run` of the registered run kind `code`: RunRecord -> Finding | None."""
    return kind_table("run")[code]().run


dead_units, label_noise, overfitting = (
    detector("dead_units"),
    detector("label_noise"),
    detector("overfitting"),
)
saturated_units, unnormalised_inputs = detector("saturated_units"), detector("unnormalised_inputs")
learning_rate_too_high, learning_rate_too_low = detector("lr_too_high"), detector("lr_too_low")


def by_code(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.code: finding for finding in findings}


def problems(findings: list[Finding]) -> list[str]:
    return [
        f"{finding.code} ({finding.severity}): {finding.evidence}"
        for finding in findings
        if finding.severity != "info"
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("doctor") / "runs"


@pytest.fixture(scope="module")
def vanishing_run(runs) -> kaizen.Run:
    return train(runs, *DEEP_SIGMOID, "name=deep-sigmoid")


@pytest.fixture(scope="module")
def diverging_run(runs) -> kaizen.Run:
    return train(runs, *SGD_LR_10, "train.epochs=3", "name=sgd-lr10")


@pytest.fixture(scope="module")
def overfit_run(runs) -> kaizen.Run:
    return train(runs, *OVERFIT, "name=overfit")


# --- the four results to reach ----------------------------------------------------------------------------------


def test_deep_sigmoid_with_small_init_has_vanishing_gradients(vanishing_run):
    findings = diagnose(vanishing_run.path)
    vanishing = by_code(findings)["vanishing_gradients"]
    assert findings[0] is vanishing and vanishing.severity == "critical"
    assert vanishing.details["median_ratio"] < 1e-4  # fc1 gets a vanishing share of the head's gradient
    assert vanishing.details["not_learning"]
    assert "fc1" in vanishing.evidence
    activations = [r.split("=")[1] for r in vanishing.recommendations if r.startswith("model.activation=")]
    inits = [r.split("=")[1] for r in vanishing.recommendations if r.startswith("init.weights=")]
    assert activations and activations[0] in RELU_FAMILY
    assert inits and all(init.startswith(("he_", "xavier_")) for init in inits)
    assert "not_learning" not in by_code(findings)  # the cause explains it; no "train longer" advice


def test_verify_trains_the_top_recommendation_and_improves_validation_accuracy(vanishing_run):
    result = verify(vanishing_run.path)
    assert result.addresses == "vanishing_gradients"
    assert result.overrides == [diagnose(vanishing_run.path)[0].recommendations[0]]
    after = kaizen.load_run(result.after.path)
    assert after.config.train.seed == vanishing_run.config.train.seed
    assert after.config.train.epochs == vanishing_run.config.train.epochs
    assert result.after.best_val_acc > result.before.best_val_acc + 0.3
    assert "vanishing_gradients" not in {finding.code for finding in result.after.findings}


def test_sgd_at_learning_rate_10_is_a_learning_rate_too_high(diverging_run):
    findings = diagnose(diverging_run.path)
    first = findings[0]
    assert all(
        math.isfinite(row["loss"]) for row in diverging_run.metrics()
    )  # no NaN: it blew up all the same
    assert first.code == "lr_too_high" and first.details["peak_epoch"] == 1
    assert first.details["peak_loss"] > 3 * math.log(10)
    lower = [r for r in first.recommendations if r.startswith("optim.lr=")]
    assert lower and float(lower[0].split("=")[1]) <= 0.1  # no higher than SGD's usual rate
    assert first.recommendations[0] == lower[0]
    assert "train.clip_norm=1.0" in first.recommendations


def test_wide_mlp_on_200_images_overfits_from_an_onset_epoch(overfit_run):
    assert abs(overfit_run.summary["data"]["train"] - 200) <= 1
    finding = by_code(diagnose(overfit_run.path))["overfitting"]
    assert finding.severity == "warning"
    onset = finding.details["onset_epoch"]
    assert 2 <= onset < 60 and f"epoch {onset}" in finding.evidence
    assert finding.details["gap"] >= 0.05 and finding.details["train_acc"] > 0.99
    remedies = {r.split("=")[0] for r in finding.recommendations}
    assert {"augment", "reg.l2", "model.dropout", "early_stop.enabled"} <= remedies


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("kaggle_cnn", ["data.name=digits", "train.epochs=4"]),
        ("mlp relu", ["model.preset=mlp", "train.epochs=30"]),
        ("mlp relu, no norm", ["model.preset=mlp", "model.norm=none", "model.dropout=0", "train.epochs=30"]),
    ],
)
def test_healthy_runs_raise_no_warning(runs, name, overrides):
    base = kaizen.Config.load(KAGGLE_CNN) if name == "kaggle_cnn" else None
    run = train(runs, *overrides, base=base)
    findings = diagnose(run.path)
    assert problems(findings) == []
    assert run.summary["test"]["acc"] > 0.9


def test_every_recommendation_applies_cleanly_and_builds(vanishing_run, diverging_run, overfit_run):
    seen = 0
    for run in (vanishing_run, diverging_run, overfit_run):
        for finding in diagnose(run.path):
            for override in finding.recommendations:
                cfg = run.config.override([override])  # raises on an invalid key or value
                assert cfg.to_dict() != run.config.to_dict(), override
                build_model(cfg.model, cfg.init, (1, 8, 8), 10)
                seen += 1
    assert seen >= 10


# --- detectors on synthetic records: the thresholds -------------------------------------------------------------


def record(train_losses: list[float], stats: list[dict] | None = None, **config: str) -> RunRecord:
    rows = [
        {"epoch": e, "split": "train", "loss": loss, "acc": 0.5} for e, loss in enumerate(train_losses, 1)
    ]
    cfg = kaizen.Config().override([f"{key.replace('__', '.')}={value}" for key, value in config.items()])
    return RunRecord(Path("run"), cfg, {"status": "done"}, {}, rows, [], stats or [], num_classes=10)


def activation_stats(field: str, fraction: float, kind: str = "ReLU", epochs: int = 3) -> list[dict]:
    return [
        {"epoch": epoch, "kind": "activation", "layer": "act1", "type": kind, "std": 0.5, field: fraction}
        for epoch in range(1, epochs + 1)
    ]


def test_oscillating_loss_is_a_learning_rate_too_high():
    bouncing = [0.8, 0.4, 0.2, 0.5, 0.3, 0.15, 0.4, 0.35, 0.12, 0.3]
    finding = learning_rate_too_high(record(bouncing, optim__lr="0.05"))
    assert finding is not None and finding.recommendations[0] == "optim.lr=0.005"
    assert learning_rate_too_high(record([0.8, 0.4, 0.2, 0.21, 0.15, 0.1, 0.11, 0.09])) is None  # noise


def test_tiny_updates_with_flowing_gradients_are_a_learning_rate_too_low():
    tiny = [{"epoch": 1, "kind": "layer", "layer": "fc1", "grad_norm": 0.3, "update_ratio": 1e-7}]
    finding = learning_rate_too_low(record([2.28, 2.28, 2.27], tiny, optim__name="sgd", optim__lr="1e-5"))
    assert finding is not None and finding.recommendations == [
        "optim.lr=0.1",
        "optim.name=adam",
    ]  # the usual rate
    dead = [{**tiny[0], "grad_norm": 0.0, "update_ratio": 0.0}]  # no gradient at all: not the rate's fault
    assert learning_rate_too_low(record([2.3, 2.3, 2.3], dead)) is None


@pytest.mark.parametrize(
    "fraction, severity", [(0.1, None), (0.3, "info"), (0.6, "warning"), (1.0, "critical")]
)
def test_dead_unit_severity_follows_the_share_of_dead_units(fraction, severity):
    finding = dead_units(record([1.0, 0.5], activation_stats("dead", fraction)))
    assert (finding and finding.severity) == severity


@pytest.mark.parametrize("fraction, severity", [(0.1, None), (0.3, "info"), (0.7, "warning")])
def test_saturation_severity_follows_the_share_of_saturated_outputs(fraction, severity):
    finding = saturated_units(record([1.0, 0.5], activation_stats("saturated", fraction, "Tanh")))
    assert (finding and finding.severity) == severity


def test_a_small_gap_on_a_small_validation_set_is_not_overfitting():
    run = record([1.0, 0.3, 0.1, 0.05])
    run.train = [{**row, "acc": 1.0} for row in run.train]
    run.val = [{"epoch": e, "split": "val", "loss": 0.3, "acc": 0.955} for e in range(1, 5)]
    run.summary = {"data": {"val": 100}}
    # a 4.5-point gap within 3 standard errors (6.2 points) of 100 images: not overfitting, and not healthy
    assert overfitting(run).code == "fit_cannot_tell"
    run.summary = {"data": {"val": 10_000}}
    assert overfitting(run) is None  # significant, but below 5 points
    run.val = [{**row, "acc": 0.90} for row in run.val]
    assert overfitting(run).severity == "warning"


def with_val(run: RunRecord, losses: list[float], accs: list[float], train_acc: float) -> RunRecord:
    run.train = [{**row, "acc": train_acc} for row in run.train]
    run.val = [
        {"epoch": e, "split": "val", "loss": loss, "acc": acc}
        for e, (loss, acc) in enumerate(zip(losses, accs), 1)
    ]
    run.summary = {"data": {"val": 144}}
    return run


def test_loss_far_above_chance_without_nan_is_a_learning_rate_too_high_not_overfitting():
    # the kaggle_cnn with Adam at 0.5: epoch 1 at 6x chance, validation 22 -> 1.2 -> 3.2, 30% accuracy
    run = record([13.8, 2.4, 2.2, 2.1, 2.0], optim__lr="0.5")
    run = with_val(run, [22.0, 1.2, 3.2, 2.9, 3.0], [0.19, 0.31, 0.30, 0.30, 0.306], train_acc=0.305)
    findings = examine(run)
    assert findings[0].code == "lr_too_high" and "6× chance" in findings[0].evidence
    assert findings[0].recommendations[0] == "optim.lr=0.001"  # no higher than Adam's usual rate
    assert "overfitting" not in by_code(findings) and "divergence" not in by_code(findings)


def test_validation_stuck_at_chance_while_train_loss_falls_slowly_is_underfitting():
    # the datacurve at fraction 0.1: validation at 10.4% from epoch 1
    run = record([2.25, 2.0, 1.7, 1.5, 1.35, 1.3], data__fraction="0.1")
    run = with_val(run, [2.30, 2.31, 2.33, 2.36, 2.40, 2.45], [0.104] * 6, train_acc=0.6)
    findings = examine(run)
    assert findings[0].code == "underfitting" and "overfitting" not in by_code(findings)


def test_gradients_that_vanished_early_lead_when_the_run_never_fits():
    stats = [
        {"epoch": e, "kind": "layer", "layer": layer, "grad_norm": norm, "update_ratio": 1e-3}
        for e, fc1 in enumerate([1e-4, 1e-3, 5e-3, 0.05, 0.06, 0.07, 0.08], 1)
        for layer, norm in (("fc1", fc1), ("head", 1.0))
    ]
    run = record([2.3, 2.3, 2.29, 2.2, 1.9, 1.6, 1.4], stats, model__activation="sigmoid")
    findings = examine(run)
    assert findings[0].code == "vanishing_gradients" and findings[0].severity == "warning"
    assert "underfitting" not in by_code(findings)
    healthy = record([2.3, 2.3, 2.29, 1.0, 0.5, 0.3, 0.2], stats, model__activation="sigmoid")
    assert by_code(examine(healthy))["vanishing_gradients"].severity == "info"  # it recovered and fitted


def test_a_run_at_chance_is_too_broken_to_judge_overfitting():
    run = with_val(record([2.3, 2.3, 2.3, 2.3]), [2.3] * 4, [0.1] * 4, train_acc=0.1)
    codes = [finding.code for finding in examine(run)]
    assert codes[0] == "not_learning" and "too_broken_to_judge" in codes and "overfitting" not in codes


def test_unnormalised_inputs_lead_when_the_first_loss_is_far_above_chance():
    assert (
        unnormalised_inputs(record([40.0, 5.0, 2.0], data__normalize="false")).code == "unnormalised_inputs"
    )
    assert (
        unnormalised_inputs(record([40.0, 5.0, 2.0])) is None
    )  # normalised: the rate's fault, not the inputs'
    assert unnormalised_inputs(record([2.3, 1.0, 0.5], data__normalize="false")) is None


def test_validation_far_below_a_separately_labelled_test_set_is_label_noise():
    run = with_val(record([2.0, 1.6, 1.5]), [1.5] * 3, [0.55, 0.60, 0.61], train_acc=0.62)
    run.config = run.config.override(["data.name=npz", "data.path=train.npz", "data.test_path=test.npz"])
    run.summary = {"data": {"val": 180}, "test": {"acc": 0.9, "n": 360}}
    assert label_noise(run).code == "label_noise"
    run.summary["test"]["acc"] = 0.65
    assert label_noise(run) is None


def test_no_problems_found_only_when_there_are_no_findings():
    from rich.console import Console

    def text(run: RunRecord) -> str:
        console = Console(record=True, width=200)
        console.print(render_findings(run, examine(run)))
        return console.export_text()

    run = with_val(record([1.0, 0.5, 0.3, 0.2]), [0.4, 0.3, 0.25, 0.24], [0.9, 0.93, 0.94, 0.95], 0.96)
    assert "no problems found" not in text(run) and "no warnings" in text(run)  # a note: no statistics
    run.config = run.config.override(["log.stats=false"])
    run.stats = [{"epoch": 1, "kind": "activation", "layer": "act1", "std": 0.5}]
    assert "cannot tell" in text(run)  # 144 validation images cannot show a 5-point gap at 95%
    run.summary = {"data": {"val": 1000}}
    assert "no problems found" in text(run)


# --- the command line and bad input -----------------------------------------------------------------------------


def test_doctor_prints_findings_with_evidence_and_overrides(monkeypatch, capsys, vanishing_run):
    code, out, err = cli(monkeypatch, capsys, "doctor", str(vanishing_run.path))
    assert code == 0, err
    for text in ("CRITICAL", "Vanishing gradients", "evidence", "why", "--set model.", "--verify"):
        assert text in out, text


def test_doctor_json(monkeypatch, capsys, overfit_run):
    code, out, _ = cli(monkeypatch, capsys, "doctor", str(overfit_run.path), "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "done" and report["epochs"] == 60
    (finding,) = [f for f in report["findings"] if f["code"] == "overfitting"]
    assert set(finding) >= {"severity", "code", "title", "evidence", "explanation", "recommendations"}
    assert isinstance(finding["details"]["onset_epoch"], int)


def test_doctor_verify_races_the_chosen_overrides_and_stores_the_ranking(monkeypatch, capsys, diverging_run):
    args = ["doctor", str(diverging_run.path), "--verify", "--try", "optim.lr=0.1", "--try", "optim.lr=1"]
    code, out, err = cli(monkeypatch, capsys, *args, "--budget", "2", "--json")
    assert code == 0, err
    verification = json.loads(out)["verification"]
    ranking = verification["ranking"]
    assert verification["winner"] in ("optim.lr=0.1", "optim.lr=1") and verification["budget_epochs"] == 2
    changes = {entry["label"]: entry["changes"] for entry in ranking}
    assert changes["optim.lr=0.1"] == ["optim.lr=0.1", "train.epochs=2"]  # the budget is listed too
    assert changes["the run as it is"] == ["train.epochs=2"]  # retrained at the same budget
    means = [entry["mean"] for entry in ranking]
    assert means == sorted(means, reverse=True) and ranking[-1]["label"] == "the run as it is"
    low, high = ranking[0]["interval95"]
    assert low <= means[0] <= high and means[0] > means[-1] + 0.5
    stored = json.loads((diverging_run.path / "doctor" / "verify.json").read_text())
    assert (
        stored["winner"] == verification["winner"]
        and (diverging_run.path / "doctor" / "verify.png").is_file()
    )


def test_doctor_verify_bad_input(monkeypatch, capsys, tmp_path, runs, diverging_run):
    code, _, err = cli(
        monkeypatch, capsys, "doctor", str(diverging_run.path), "--verify", "--candidates", "0"
    )
    assert_one_line_error(code, err, "--candidates 0")
    healthy = train(runs, "model.preset=mlp", "train.epochs=15", "name=healthy-verify")
    assert problems(diagnose(healthy.path)) == []
    code, out, err = cli(monkeypatch, capsys, "doctor", str(healthy.path), "--verify")
    assert code == 0 and "nothing to fix" in out, err
    moved = copy_run(diverging_run, tmp_path)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["data"].update(name="npz", path=str(tmp_path / "gone.npz"))  # the data moved away since the run
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = cli(monkeypatch, capsys, "doctor", str(moved), "--verify", "--try", "optim.lr=0.1")
    assert_one_line_error(code, err, "gone.npz")
    meta = json.loads((moved / "meta.json").read_text())
    (moved / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    code, _, err = cli(monkeypatch, capsys, "doctor", str(moved), "--verify")
    assert_one_line_error(code, err, "still in progress")


def assert_one_line_error(code: int, err: str, *culprits: str) -> None:
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and all(culprit in line for culprit in culprits), line


def test_doctor_on_a_folder_that_is_not_a_run(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "doctor", str(tmp_path))
    assert_one_line_error(code, err, "not a kaizen run")
    code, _, err = cli(monkeypatch, capsys, "doctor", str(tmp_path / "missing"))
    assert_one_line_error(code, err, "not found")


def copy_run(run: kaizen.Run, destination: Path) -> Path:
    return Path(shutil.copytree(run.path, destination / run.path.name))


def test_doctor_on_a_run_in_progress_diagnoses_what_exists(monkeypatch, capsys, tmp_path, overfit_run):
    path = copy_run(overfit_run, tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "status": "running", "end": None}))
    (path / "summary.json").unlink()
    code, out, err = cli(monkeypatch, capsys, "doctor", str(path))
    assert code == 0, err
    assert "Run still in progress" in out and "60 finished epoch(s) of 60" in out and "Overfitting" in out


def test_doctor_on_a_run_with_no_finished_epoch(monkeypatch, capsys, tmp_path, overfit_run):
    path = copy_run(overfit_run, tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    for name in ("metrics.csv", "stats.jsonl", "summary.json"):
        (path / name).unlink()
    code, _, err = cli(monkeypatch, capsys, "doctor", str(path))
    assert_one_line_error(code, err, "still running", "no finished epoch")


def test_doctor_on_a_run_without_metrics_is_an_error_not_healthy(monkeypatch, capsys, tmp_path, overfit_run):
    path = copy_run(overfit_run, tmp_path)
    (path / "metrics.csv").unlink()
    code, _, err = cli(monkeypatch, capsys, "doctor", str(path))
    assert_one_line_error(code, err, "metrics.csv", "missing")


def test_doctor_on_a_run_without_statistics_says_how_to_enable_them(monkeypatch, capsys, runs):
    run = train(runs, *SGD_LR_10, "train.epochs=2", "log.stats=false", "name=no-stats")
    code, out, err = cli(monkeypatch, capsys, "doctor", str(run.path))
    assert code == 0, err
    assert "No per-layer statistics" in out and "--set log.stats=true" in out
    assert "Learning rate too high" in out  # metrics.csv alone still shows it


def test_doctor_skips_a_corrupt_stats_line_with_a_warning(monkeypatch, capsys, tmp_path, vanishing_run):
    path = copy_run(vanishing_run, tmp_path)
    lines = (path / "stats.jsonl").read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a line cut in half
    (path / "stats.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = cli(monkeypatch, capsys, "doctor", str(path))
    assert code == 0
    assert "warning:" in err and "line 4" in err
    assert "Vanishing gradients" in out and "Corrupt lines skipped" in out


def test_python_api(vanishing_run):
    findings = kaizen.diagnose(vanishing_run.path)
    assert findings[0].code == "vanishing_gradients"
    assert examine(read_run(vanishing_run.path))[0].to_dict()["severity"] == "critical"
    assert all(math.isfinite(value) for value in findings[0].details["ratio_by_epoch"].values())


# --- "cannot tell" and cause attribution (issue 22) ---------------------------------------------------------


def test_a_validation_set_too_small_to_show_the_gap_is_cannot_tell_not_healthy():
    # the photo run: train 99.2%, validation 92.5% on 40 images (3 standard errors: 12.5 points)
    run = with_val(record([1.0, 0.3, 0.1, 0.05]), [0.4] * 4, [0.925] * 4, train_acc=0.992)
    run.summary = {"data": {"val": 40}}
    finding = overfitting(run)
    assert finding is not None and finding.code == "fit_cannot_tell" and finding.severity == "info"
    assert "cannot tell (validation set of 40 images)" in finding.title
    assert "cannot show a gap below 12.5 points" in finding.evidence
    assert finding.recommendations == ["data.val_split=0.5"]  # 250 images needed; 0.5 of 400 holds 200
    assert finding.details["needed_val_size"] == 250 and "k-fold" in finding.explanation
    text = rendered(run, examine(run))
    assert "no problems found" not in text and "look healthy" not in text and "cannot tell" in text
    run.summary = {"data": {"val": 100}}  # 1,000 images in all: a split of 0.25 holds the 250 needed
    assert overfitting(run).recommendations == ["data.val_split=0.25"]
    run.summary = {"data": {"val": 2000}}  # enough images: the 6.7-point gap is overfitting
    assert overfitting(run).code == "overfitting"
    run.val = [{**row, "acc": 0.99} for row in run.val]  # no gap, judged on enough images: healthy
    assert overfitting(run) is None


def rendered(run: RunRecord, findings: list[Finding]) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_findings(run, findings))
    return console.export_text()


def test_a_heavily_regularised_network_is_told_to_reduce_the_regulariser_not_to_grow(runs):
    run = train(
        runs / "l2",
        "data.name=digits",
        "model.preset=mlp",
        "model.hidden=[64,32]",
        "model.norm=none",
        "model.dropout=0",
        "reg.l2=0.5",
        "train.epochs=4",
    )
    findings = diagnose(run.path)
    finding, fix = kaizen.doctor.top_recommendation(findings)
    assert fix == "reg.l2=0.005", problems(findings)
    assert finding.suspects[0] == "reg.l2" and "suspected: reg.l2=0.5" in finding.evidence
    assert "weaker" in finding.reasons[fix]
    assert not any(override.startswith("model.hidden") for override in finding.recommendations[:1])


def test_not_learning_under_strong_weight_decay_reduces_it_before_growing_the_model():
    run = record([2.3, 2.3, 2.3, 2.3], optim__name="sgd", optim__lr="0.1", optim__weight_decay="0.5")
    run.config = run.config.override(["model.preset=mlp", "model.dropout=0", "model.norm=none"])
    findings = examine(run)
    assert findings[0].code == "not_learning"
    assert findings[0].recommendations[0] == "optim.weight_decay=0.005"
    assert findings[0].recommendations.index("optim.weight_decay=0.005") < findings[0].recommendations.index(
        "model.hidden=[80,40]"
    )


def test_a_saturating_deep_tanh_net_at_a_modest_rate_is_not_told_its_rate_is_too_high():
    bouncing = [0.8, 0.4, 0.2, 0.5, 0.3, 0.15, 0.4, 0.35, 0.12, 0.3]
    saturated = activation_stats("saturated", 0.7, "Tanh", epochs=10)
    deep_tanh = dict(
        model__preset="mlp",
        model__hidden="[64,64,64,64,64,64]",
        model__activation="tanh",
        model__norm="none",
        init__weights="normal",
        init__std="0.5",
        optim__name="sgd",
        optim__lr="0.05",  # half of SGD's usual 0.1
    )
    findings = examine(record(bouncing, saturated, **deep_tanh))
    finding, fix = kaizen.doctor.top_recommendation(findings)
    assert fix == "init.weights=xavier_normal", problems(findings)
    # at a usual rate the finding does not call the rate too high: its code names the symptom
    assert "lr_too_high" not in by_code(findings)
    unstable = by_code(findings)["unstable_loss"]
    assert (
        unstable.title.startswith("Unstable loss") and "no higher than sgd's usual 0.1" in unstable.evidence
    )
    assert "init.weights" in unstable.suspects and not unstable.recommendations[0].startswith("optim.lr")
    assert by_code(findings)["saturated_units"].recommendations[0] == "init.weights=xavier_normal"
    # the same curve at 5x the usual rate: the rate is the suspect again
    fast = {**deep_tanh, "optim__lr": "0.5"}
    fast_findings = by_code(examine(record(bouncing, saturated, **fast)))
    assert fast_findings["lr_too_high"].recommendations[0] == "optim.lr=0.05"
    assert "unstable_loss" not in fast_findings and fast_findings["lr_too_high"].title.startswith("Learning rate")
    # the same curve at the usual rate, with nothing unusual to suspect: still not "too high", a lower rate first
    plain = {**deep_tanh, "init__weights": "xavier_normal", "init__std": "0.05", "optim__lr": "0.1"}
    usual = by_code(examine(record(bouncing, saturated, **plain)))
    assert "lr_too_high" not in usual and usual["unstable_loss"].recommendations[0].startswith("optim.lr=")


def test_a_run_that_diverged_at_a_low_rate_blames_the_knob_not_the_rate():
    exploded = dict(
        model__preset="mlp", init__weights="normal", init__std="0.6", optim__name="sgd", optim__lr="0.001"
    )
    finding = by_code(examine(record([40.0, math.nan], **exploded)))["divergence"]
    assert "learning rate too high" not in finding.title and "init.weights" in finding.title
    assert (
        finding.recommendations[0] == "init.weights=he_normal"
        and "no higher than sgd's usual" in finding.evidence
    )
    fast = {**exploded, "init__weights": "default", "optim__lr": "10"}
    assert by_code(examine(record([40.0, math.nan], **fast)))["divergence"].title.endswith(
        "learning rate too high"
    )


@pytest.mark.parametrize(
    "overrides, symptom, key, fix",
    [
        (["optim.name=momentum", "optim.momentum=0.999"], "unstable", "optim.momentum", "optim.momentum=0.9"),
        (
            ["optim.name=adam", "optim.betas=[0.995,0.999]"],
            "unstable",
            "optim.betas",
            "optim.betas=[0.9,0.999]",
        ),
        (["reg.l1=0.01"], "dead", "reg.l1", "reg.l1=0.0001"),
        (["model.dropout=0.8"], "not_learning", "model.dropout", "model.dropout=0.2"),
        (["optim.name=sgd", "optim.lr=1e-5"], "not_learning", "optim.lr", "optim.lr=0.1"),
        (["init.bias=-2"], "vanishing", "init.bias", "init.bias=0.0"),
    ],
)
def test_each_unusual_knob_is_suspected_for_its_symptoms_and_its_fix_applies(overrides, symptom, key, fix):
    from kaizen.doctor import causes

    cfg = kaizen.Config().override(overrides)
    (suspect,) = [s for s in causes.suspects(cfg, symptom) if s.key == key]
    assert suspect.fix == fix and cfg.override([fix]) != cfg  # a valid override that changes the config
    assert not [s for s in causes.suspects(kaizen.Config(), symptom)]  # the defaults suspect nothing
