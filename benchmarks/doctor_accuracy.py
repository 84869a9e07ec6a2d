"""How often is the doctor right? Planted faults and healthy runs, with the confusion matrix of its primary finding.

Each fault is a config change (or a data file written here) known to cause one problem; each is trained on
digits and mnist-10k (when /work/shared/data/mnist is there) over several seeds, then diagnosed. The primary
finding is the doctor's first warning or critical finding (its report is ordered by severity, causes first).
Healthy runs across presets, optimisers and data sets must raise no warning at all.

    python benchmarks/doctor_accuracy.py            # 12 faults x 3 seeds x 2 data sets + 12 healthy runs
    python benchmarks/doctor_accuracy.py --quick    # 1 seed, digits only, 4 healthy runs: for iterating
    python benchmarks/doctor_accuracy.py --runs DIR --datasets mnist   # keep runs; re-diagnose kept ones
    python benchmarks/doctor_accuracy.py --generated 24 --seed 1       # 24 held-out generated faults, raced

--generated N draws N faults over random recipes, data sets, strengths and optimisers (doctor_faults.py) and
scores the primary finding, whether the first fix undoes the planted knob, and a race of the first fixes.

It also prints the measurements the detectors' thresholds rest on: on healthy runs the largest loss relative
to ln(classes), the largest dead and saturated shares, the smallest and largest gradient ratios, the largest
train-validation gap and test-validation gap; on the faults, the same numbers where the thresholds must be
crossed. Results go to --out (default benchmarks/out/doctor_accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from common import MNIST
from doctor_faults import RACE_FIXES, TIE, first_fix_targets, generate

import kaizen
from kaizen import registry
from kaizen.config import DataConfig
from kaizen.data import to_float
from kaizen.doctor import diagnose, read_run

BASE = [  # a small ReLU MLP with nothing that hides a fault: no norm, no dropout, a constant rate
    "model.preset=mlp",
    "model.hidden=[64,32]",
    "model.activation=relu",
    "model.norm=none",
    "model.dropout=0",
    "optim.name=adam",
    "optim.lr=0.001",
    "schedule.name=constant",
    "train.epochs=8",
    "train.device=cpu",
    "train.threads=1",  # one thread per run: on a shared machine, two threads wait on each other
    "log.tensorboard=false",
    "log.plots=false",
    "log.progress=false",
]
# fault: (the finding the doctor must put first, overrides); {npz}/{npz_test} are the files written below
FAULTS: dict[str, tuple[str, list[str]]] = {
    "vanishing": (
        "vanishing_gradients",
        [
            "model.hidden=[32,32,32,32,32,32]",
            "model.activation=sigmoid",
            "init.weights=normal",
            "init.std=0.01",
            "optim.name=sgd",
            "optim.lr=0.1",
        ],
    ),
    "exploding": (
        "exploding_gradients",
        [
            "model.hidden=[64,64,64,64,64,64]",
            "init.weights=normal",
            "init.std=0.5",
            "optim.name=sgd",
            "optim.lr=1e-4",
        ],
    ),
    "saturation": (
        "saturated_units",
        ["model.activation=sigmoid", "init.weights=normal", "init.std=1.0", "optim.name=sgd", "optim.lr=0.1"],
    ),
    "dead_units": ("dead_units", ["init.bias=-1.5"]),
    "lr_far_too_high": ("lr_too_high", ["optim.lr=0.3"]),
    "lr_too_high_nan": ("divergence", ["optim.name=sgd", "optim.lr=100"]),
    "lr_too_low": ("lr_too_low", ["optim.name=sgd", "optim.lr=1e-5"]),
    "overfitting": ("overfitting", ["model.hidden=[512]", "data.fraction={small}", "train.epochs=60"]),
    "underfit_capacity": (
        "underfitting",
        ["model.hidden=[2]", "model.activation=tanh", "init.weights=xavier_normal", "train.epochs=15"],
    ),
    "underfit_epochs": ("underfitting", ["optim.lr=0.0003", "train.epochs=2"]),
    "bad_init_loss": (
        "unnormalised_inputs",
        ["data.name=npz", "data.path={npz_raw}", "data.test_path={npz_raw_test}", "data.normalize=false"],
    ),
    "label_noise": (
        "label_noise",
        ["data.name=npz", "data.path={npz_noisy}", "data.test_path={npz_clean_test}"],
    ),
}
HEALTHY: list[tuple[str, str, list[str]]] = [  # (name, data set, overrides on top of BASE)
    ("mlp adam", "digits", ["train.epochs=15"]),
    ("mlp momentum", "digits", ["optim.name=momentum", "optim.lr=0.05", "train.epochs=15"]),
    (
        "mlp tanh xavier adamw",
        "digits",
        ["model.activation=tanh", "init.weights=xavier_normal", "optim.name=adamw", "train.epochs=15"],
    ),
    (
        "mlp bn dropout cosine",
        "digits",
        ["model.norm=batch", "model.dropout=0.2", "schedule.name=cosine", "train.epochs=15"],
    ),
    ("simple_cnn adam", "digits", ["model.preset=simple_cnn", "train.epochs=10"]),
    (
        "lenet5 sgd nesterov",
        "digits",
        ["model.preset=lenet5", "optim.name=nesterov", "optim.lr=0.05", "train.epochs=10"],
    ),
    (
        "vgg_small default",
        "digits",
        [
            "model.preset=vgg_small",
            "model.norm=batch",
            "model.dropout=0.3",
            "schedule.name=cosine",
            "train.epochs=8",
        ],
    ),
    ("mlp rmsprop", "digits", ["optim.name=rmsprop", "train.epochs=15"]),
    # Without dropout this MLP overfits 1,800 images (train 98.4% vs validation 90.3%, validation loss rising
    # from epoch 8): the doctor said so, rightly, so the healthy recipe has dropout.
    ("mlp adam dropout", "mnist", ["model.dropout=0.3", "train.epochs=10"]),
    ("mlp momentum", "mnist", ["optim.name=momentum", "optim.lr=0.05", "train.epochs=10"]),
    ("simple_cnn adam", "mnist", ["model.preset=simple_cnn", "train.epochs=5"]),
    ("conv_net adam", "mnist", ["model.preset=conv_net", "train.epochs=5"]),
]
QUICK_HEALTHY = {0, 1, 4, 5}
MNIST_FRACTION = 0.25  # 1,800 of mnist-10k's 7,200 training images: the faults show as well, 4× faster
OVERFIT_IMAGES = 200


def dataset_overrides(name: str, root: Path = MNIST) -> list[str]:
    if name == "digits":
        return ["data.name=digits"]
    return ["data.name=mnist", f"data.root={root}", f"data.fraction={MNIST_FRACTION}"]


def write_npz_files(name: str, folder: Path, root: Path = MNIST) -> dict[str, str]:
    """The data files of two faults: raw 0-255 float pixels, and 40% of the training file's labels shuffled."""
    cfg = DataConfig(name=name, root=str(root))
    raw = registry.DATASETS.create(name, cfg)
    rng = np.random.default_rng(0)
    train_x, train_y = to_float(raw.train_x), raw.train_y.copy()
    if name != "digits":  # the same 1,800 training images as the other mnist runs
        keep = rng.choice(len(train_y), size=int(MNIST_FRACTION * len(train_y)), replace=False)
        train_x, train_y = train_x[keep], train_y[keep]
    noisy = train_y.copy()
    flip = rng.random(len(noisy)) < 0.4
    noisy[flip] = rng.integers(0, len(raw.class_names), size=int(flip.sum()))
    test_x = to_float(raw.test_x)
    files = {
        "npz_raw": (train_x * 255, train_y),
        "npz_raw_test": (test_x * 255, raw.test_y),
        "npz_noisy": (train_x, noisy),
        "npz_clean_test": (test_x, raw.test_y),
    }
    paths = {}
    for key, (x, y) in files.items():
        path = folder / f"{name}-{key}.npz"
        np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
        paths[key] = str(path)
    return paths


def train_and_diagnose(overrides: list[str], runs: Path) -> tuple[list, object]:
    """Train (a diverging run stops with an error but leaves its record) and return (findings, run record).

    A finished run already in `runs` is diagnosed again without training (--runs: re-score after a change
    to the detectors)."""
    done = (
        [path for path in sorted(runs.glob("*")) if (path / "meta.json").is_file()] if runs.is_dir() else []
    )
    done = [path for path in done if read_run(path).status != "running"]
    if not done:
        cfg = kaizen.Config().override([*BASE, *overrides, f"log.runs_dir={runs}"])
        try:
            kaizen.train(cfg)
        except kaizen.KaizenError:
            pass
    path = sorted(runs.iterdir())[0]  # the run trained here (a later --verify adds its trials beside it)
    return diagnose(path), read_run(path)


def primary(findings: list) -> str:
    return next((finding.code for finding in findings if finding.severity != "info"), "none")


def measurements(record) -> dict[str, float]:
    """The numbers the thresholds are set against, for one run."""
    chance = record.chance_loss or math.log(10)
    train = [row["loss"] for row in record.train if math.isfinite(row["loss"])]
    val = [row["loss"] for row in record.val[1:] if math.isfinite(row["loss"])]
    out: dict[str, float] = {}
    if train or val:
        out["max_loss_over_chance"] = max(train + val) / chance
    if train:
        out["first_loss_over_chance"] = train[0] / chance
        out["best_train_over_chance"] = min(train) / chance
    first_act = [r["std"] for r in record.stats if r["kind"] == "activation" and r.get("std") is not None]
    if first_act:
        out["first_activation_std"] = first_act[0]
    dead = [r["dead"] for r in record.stats if r["kind"] == "activation" and r.get("dead") is not None]
    saturated = [
        r["saturated"] for r in record.stats if r["kind"] == "activation" and r.get("saturated") is not None
    ]
    out["max_dead"] = max(dead, default=0.0)
    out["max_saturated"] = max(saturated, default=0.0)
    from kaizen.doctor.detectors import _gradient_ratios

    low = _gradient_ratios(record, min)
    high = _gradient_ratios(record, max)
    if low:
        out["median_min_grad_ratio"] = statistics.median(ratio for ratio, _ in low.values())
        out["median_max_grad_ratio"] = statistics.median(ratio for ratio, _ in high.values())
    if record.train and record.val:
        out["final_gap"] = record.train[-1]["acc"] - record.val[-1]["acc"]
        test = record.summary.get("test", {}).get("acc")
        if test is not None:
            out["test_minus_best_val"] = test - max(row["acc"] for row in record.val)
    updates = [r["update_ratio"] for r in record.stats if r["kind"] == "layer" and r.get("update_ratio")]
    if updates:
        out["max_update_ratio"] = max(updates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, the first data set only, 4 healthy runs"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="digits,mnist", help="comma-separated: digits, mnist")
    parser.add_argument("--faults", default="", help="comma-separated subset of faults (default: all)")
    parser.add_argument("--runs", type=Path, help="keep the runs here; runs already there are re-diagnosed")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "doctor_accuracy.json")
    parser.add_argument(
        "--generated", type=int, default=0, help="N generated faults instead of the hand-made"
    )
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed (--generated)")
    parser.add_argument("--mnist-root", type=Path, default=MNIST, help="mnist's IDX folder")
    args = parser.parse_args()
    if args.generated:
        return run_generated(args)
    seeds = 1 if args.quick else args.seeds
    datasets = [name for name in args.datasets.split(",") if name == "digits" or args.mnist_root.is_dir()]
    datasets = datasets[:1] if args.quick else datasets
    faults = [name for name in FAULTS if not args.faults or name in args.faults.split(",")]
    start = time.perf_counter()
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.runs or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        for dataset in datasets:
            files = write_npz_files(dataset, tmp, args.mnist_root)
            images = 1294 if dataset == "digits" else int(MNIST_FRACTION * 7200)
            files["small"] = f"{OVERFIT_IMAGES / images:.3f}"
            for fault in faults:
                expected, overrides = FAULTS[fault]
                overrides = [override.format(**files) for override in overrides]
                data = (
                    []
                    if any(o.startswith("data.name=npz") for o in overrides)
                    else dataset_overrides(dataset, args.mnist_root)
                )
                if dataset == "mnist" and "data.fraction={small}" in FAULTS[fault][1]:
                    data = [o for o in data if not o.startswith("data.fraction")]
                for seed in range(seeds):
                    runs = tmp / f"{dataset}-{fault}-{seed}"
                    findings, record = train_and_diagnose([*data, *overrides, f"train.seed={seed}"], runs)
                    got = primary(findings)
                    results.append(
                        {
                            "kind": "fault",
                            "name": fault,
                            "dataset": dataset,
                            "seed": seed,
                            "expected": expected,
                            "primary": got,
                            "codes": [f"{f.code}:{f.severity}" for f in findings],
                            "measured": measurements(record),
                        }
                    )
                    print(
                        f"{dataset:6} {fault:18} seed {seed}: {got:22} {'ok' if got == expected else 'MISS'} "
                        f"{[f.code + ':' + f.severity for f in findings]}",
                        flush=True,
                    )
        for index, (name, dataset, overrides) in enumerate(HEALTHY):
            if dataset not in datasets or (args.quick and index not in QUICK_HEALTHY):
                continue
            runs = tmp / f"healthy-{index}"
            findings, record = train_and_diagnose(
                [*dataset_overrides(dataset, args.mnist_root), *overrides], runs
            )
            warnings = [f"{f.code}:{f.severity}" for f in findings if f.severity != "info"]
            results.append(
                {
                    "kind": "healthy",
                    "name": name,
                    "dataset": dataset,
                    "warnings": warnings,
                    "test_acc": record.summary.get("test", {}).get("acc"),
                    "measured": measurements(record),
                }
            )
            print(
                f"healthy {dataset:6} {name:24} test {results[-1]['test_acc'] or 0:.1%} warnings {warnings}",
                flush=True,
            )
    report(results, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"results: {args.out}")


def report(results: list[dict], seconds: float) -> None:
    faults = [r for r in results if r["kind"] == "fault"]
    healthy = [r for r in results if r["kind"] == "healthy"]
    expected_codes = list(dict.fromkeys(r["expected"] for r in faults))
    columns = expected_codes + sorted({r["primary"] for r in faults} - set(expected_codes))
    matrix = Counter((r["name"], r["primary"]) for r in faults)
    print(
        f"\nconfusion matrix: planted fault (rows) x the doctor's primary finding (columns); {seconds:.0f} s"
    )
    names = list(dict.fromkeys(r["name"] for r in faults))
    print("| fault | expected | " + " | ".join(columns) + " | recall |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for name in names:
        rows = [r for r in faults if r["name"] == name]
        right = sum(r["primary"] == r["expected"] for r in rows)
        cells = [str(matrix[(name, code)] or "") for code in columns]
        print(f"| {name} | {rows[0]['expected']} | " + " | ".join(cells) + f" | {right}/{len(rows)} |")
    right = sum(r["primary"] == r["expected"] for r in faults)
    if faults:
        print(f"\nprimary finding right on {right}/{len(faults)} fault runs ({right / len(faults):.0%})")
    warned = [r for r in healthy if r["warnings"]]
    print(
        f"healthy runs with a warning: {len(warned)}/{len(healthy)}"
        + "".join(f"\n  {r['dataset']} {r['name']}: {r['warnings']}" for r in warned)
    )
    print("\nmeasurements (min / max over runs) behind the thresholds:")
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups["healthy" if r["kind"] == "healthy" else r["name"]].append(r["measured"])
    keys = sorted({key for r in results for key in r["measured"]})
    print("| runs | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for group, measured in groups.items():
        cells = []
        for key in keys:
            values = [m[key] for m in measured if key in m]
            cells.append(f"{min(values):.3g} / {max(values):.3g}" if values else "")
        print(f"| {group} | " + " | ".join(cells) + " |")


def best_val(record) -> float:
    return max((row["acc"] for row in record.val), default=0.0)


def race(record, fixes: list[str], runs: Path) -> list[float]:
    """Best validation accuracy of the run's config and seed with each fix alone (the same epochs)."""
    scores = []
    for index, fix in enumerate(fixes):
        folder = runs / f"fix{index}"
        if not (folder.is_dir() and any(folder.iterdir())):
            try:
                kaizen.train(record.config.override([fix, f"log.runs_dir={folder}"]))
            except kaizen.KaizenError:
                pass  # a diverging trial leaves its record; one that could not start scores 0
        done = sorted(folder.iterdir()) if folder.is_dir() else []
        scores.append(best_val(read_run(done[0])) if done else 0.0)
    return scores


def run_generated(args) -> None:
    """Train and diagnose the generated cases, race the primary finding's first fixes, print the scores."""
    cases = generate(args.generated, args.seed)
    datasets = [name for name in args.datasets.split(",") if name == "digits" or args.mnist_root.is_dir()]
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.runs or Path(scratch)
        for index, case in enumerate(cases):
            dataset = case.dataset if case.dataset in datasets else "digits"
            runs = tmp / f"gen{args.seed}-{index:03d}-{case.name}"
            data = dataset_overrides(dataset, args.mnist_root)
            try:
                findings, record = train_and_diagnose(
                    [*data, *case.overrides, f"train.seed={index}"], runs / "run"
                )
            except (kaizen.KaizenError, OSError) as error:
                print(f"{index:3} {case.name}: not run ({error})", flush=True)
                continue
            problem = next((f for f in findings if f.severity != "info"), None)
            fixes = problem.recommendations[:RACE_FIXES] if problem else []
            scores = race(record, fixes, runs) if len(fixes) > 1 else []
            first_best = bool(scores) and scores[0] >= max(scores) - TIE
            results.append(
                {
                    "case": case.name,
                    "dataset": dataset,
                    "overrides": case.overrides,
                    "expected": list(case.expected),
                    "primary": problem.code if problem else "none",
                    "primary_right": bool(problem) and problem.code in case.expected,
                    "fixes": fixes,
                    "cause_right": first_fix_targets(fixes[0] if fixes else None, case.planted),
                    "baseline_val": best_val(record),
                    "race": scores,
                    "first_fix_best": first_best,
                    "first_fix_helps": bool(scores) and scores[0] > best_val(record) + TIE,
                }
            )
            row = results[-1]
            print(
                f"{index:3} {dataset:6} {case.name:12} {row['primary']:20} "
                f"{'ok ' if row['primary_right'] else 'MISS'} cause {'ok ' if row['cause_right'] else 'MISS'} "
                f"base {row['baseline_val']:.1%} race {[f'{x:.1%}' for x in scores]} {fixes}",
                flush=True,
            )
    report_generated(results, time.perf_counter() - start, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_name(f"doctor_generated_{args.seed}.json").write_text(json.dumps(results, indent=1))


def report_generated(results: list[dict], seconds: float, seed: int) -> None:
    print(f"\ngenerated faults (seed {seed}, {len(results)} cases, {seconds:.0f} s):")
    print(
        "| fault | cases | primary right | first fix undoes the planted knob | raced | first fix best | first fix helps |"
    )
    print("|---|---|---|---|---|---|---|")
    names = list(dict.fromkeys(r["case"] for r in results)) + ["all"]
    for name in names:
        rows = [r for r in results if name in ("all", r["case"])]
        raced = [r for r in rows if r["race"]]
        print(
            f"| {name} | {len(rows)} | {sum(r['primary_right'] for r in rows)} | "
            f"{sum(r['cause_right'] for r in rows)} | {len(raced)} | {sum(r['first_fix_best'] for r in raced)} | "
            f"{sum(r['first_fix_helps'] for r in raced)} |"
        )


if __name__ == "__main__":
    sys.exit(main())
