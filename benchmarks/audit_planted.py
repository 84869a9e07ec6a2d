"""How well `kaizen audit` finds planted problems, and the distributions its thresholds come from.

    python benchmarks/audit_planted.py --data digits --out /tmp/audit-bench
    python benchmarks/audit_planted.py --data mnist-10k --root ../shared/data/mnist --out /tmp/audit-bench

Two planted data sets are written as npz files (train.npz, test.npz) and audited:
- `noisy`: 10% of the training labels flipped to another class at random (seeded; flipped.npy lists them).
  Measured: precision and recall of the `label` issues against the flipped set.
- `leaky`: 50 test images copied into training and 50 more shifted by one pixel (planted.npy lists the new
  training rows). Measured: the share of exact and shifted copies flagged `leak`, the share of the other
  (clean) training examples flagged `leak` or `duplicate`, and the quantiles of the aligned pixel cosine
  to the nearest test example for clean and shifted examples (what NEAR_PIXEL rests on).
With `--retrain N`, `kaizen compare` then trains on the noisy labels and with the audit's issues excluded
(`data.exclude`), N seeds each, and the report adds both accuracies with their intervals and the p-value.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kaizen import Config, registry
from kaizen.audit import findings, run_audit
from kaizen.data import to_float

FLIP = 0.10
PLANTED = 50


def base_raw(data: str, root: str):
    cfg = Config().override(
        ["data.name=digits"] if data == "digits" else ["data.name=mnist", f"data.root={root}"]
    )
    return registry.DATASETS.create(cfg.data.name, cfg.data)


def shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved one pixel up, down, left or right (the edge it leaves filled with zeros)."""
    out = np.zeros_like(images)
    for k, image in enumerate(images):
        axis, step = rng.integers(1, 3), rng.choice([-1, 1])
        moved = np.roll(image, step, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = 0 if step == 1 else -1
        moved[tuple(edge)] = 0
        out[k] = moved
    return out


def plant(raw, out: Path, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = len(raw.class_names)
    noisy = out / "noisy"
    noisy.mkdir(parents=True, exist_ok=True)
    n = len(raw.train_y)
    flipped = np.sort(rng.choice(n, round(FLIP * n), replace=False))
    labels = raw.train_y.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    np.savez(noisy / "train.npz", x=raw.train_x, y=labels)
    np.savez(noisy / "test.npz", x=raw.test_x, y=raw.test_y)
    np.save(noisy / "flipped.npy", flipped)
    leaky = out / "leaky"
    leaky.mkdir(parents=True, exist_ok=True)
    picked = rng.choice(len(raw.test_y), 2 * PLANTED, replace=False)
    exact, moved = picked[:PLANTED], picked[PLANTED:]
    x = np.concatenate([raw.train_x, raw.test_x[exact], shifted(raw.test_x[moved], rng)])
    y = np.concatenate([raw.train_y, raw.test_y[exact], raw.test_y[moved]])
    np.savez(leaky / "train.npz", x=x, y=y)
    np.savez(leaky / "test.npz", x=raw.test_x, y=raw.test_y)
    return {
        "flipped": flipped,
        "exact": np.arange(n, n + PLANTED),
        "shifted": np.arange(n + PLANTED, n + 2 * PLANTED),
    }


def config(folder: Path, overrides: list[str]) -> Config:
    return Config().override(
        [
            "data.name=npz",
            f"data.path={folder / 'train.npz'}",
            f"data.test_path={folder / 'test.npz'}",
            *overrides,
        ]
    )


def quantiles(values: np.ndarray) -> dict[str, float]:
    points = {"min": 0, "q01": 1, "q10": 10, "q50": 50, "q90": 90, "q99": 99, "q99.9": 99.9, "max": 100}
    return (
        {name: round(float(np.percentile(values, q)), 4) for name, q in points.items()} if len(values) else {}
    )


def retrain(noisy: Path, overrides: list[str], seeds: int, workers: int | None) -> dict:
    """Train on the noisy labels and with the audit's issues excluded (kaizen compare); return both results."""
    (noisy / "config.yaml").write_text(config(noisy, overrides).to_yaml())
    command = [
        sys.executable,
        "-m",
        "kaizen",
        "compare",
        "-c",
        str(noisy / "config.yaml"),
        "--seeds",
        str(seeds),
        "--vary",
        f"data.exclude=null,{noisy / 'audit' / 'issues.csv'}",
        "--out",
        str(noisy / "retrain"),
    ]
    began = time.perf_counter()
    subprocess.run(command + (["--workers", str(workers)] if workers else []), check=True)
    with (noisy / "retrain" / "results.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    return {"seconds": round(time.perf_counter() - began, 1), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["digits", "mnist-10k"], default="digits")
    parser.add_argument("--root", default="../shared/data/mnist")
    parser.add_argument("--out", type=Path, default=Path("audit-bench"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--retrain", type=int, default=0, help="seeds of the noisy vs cleaned compare (0: none)"
    )
    args = parser.parse_args()
    out = args.out / args.data
    planted = plant(base_raw(args.data, args.root), out, args.seed)
    report: dict = {"data": args.data, "folds": args.folds, "overrides": args.overrides}

    began = time.perf_counter()
    noisy = run_audit(
        config(out / "noisy", args.overrides), out / "noisy" / "audit", args.folds, args.workers
    )
    report["noisy_seconds"] = round(time.perf_counter() - began, 1)
    flagged = {issue.index for issue in noisy.issues if issue.issue == "label"}
    truth = set(planted["flipped"].tolist())
    hits = len(flagged & truth)
    report["label"] = {
        "flipped": len(truth),
        "flagged": len(flagged),
        "precision": round(hits / max(len(flagged), 1), 4),
        "recall": round(hits / len(truth), 4),
        "out_of_fold_acc": round(noisy.summary["out_of_fold_acc"], 4),
    }

    if args.retrain:
        report["retrain"] = retrain(out / "noisy", args.overrides, args.retrain, args.workers)

    began = time.perf_counter()
    cfg = config(out / "leaky", args.overrides)
    leaky = run_audit(cfg, out / "leaky" / "audit", args.folds, args.workers)
    report["leaky_seconds"] = round(time.perf_counter() - began, 1)
    leaks = {issue.index for issue in leaky.issues if issue.issue == "leak"}
    copies = {issue.index for issue in leaky.issues if issue.issue in ("leak", "duplicate")}
    clean = np.arange(planted["exact"][0])
    report["leak"] = {
        "exact_flagged": round(np.isin(planted["exact"], list(leaks)).mean(), 4),
        "shifted_flagged": round(np.isin(planted["shifted"], list(leaks)).mean(), 4),
        "clean_flagged_leak": round(np.isin(clean, list(leaks)).mean(), 4),
        "clean_flagged_leak_or_duplicate": round(np.isin(clean, list(copies)).mean(), 4),
    }
    x_train = to_float(np.load(out / "leaky" / "train.npz")["x"])
    _, similarity = findings.nearest_copy(x_train, to_float(np.load(out / "leaky" / "test.npz")["x"]))
    report["distributions"] = {
        "nearest_test_pixel_cosine_clean": quantiles(similarity[clean]),
        "nearest_test_pixel_cosine_shifted": quantiles(similarity[planted["shifted"]]),
        "outliers_flagged": int(leaky.counts["outlier"]),
        "duplicates_flagged": int(leaky.counts["duplicate"]),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
