"""lr-find against a grid: is the range test's suggestion within one decade of the best rate of full runs?

For SGD and Adam on each data set: the range test's valley and steepest-slope suggestions, then a 7-point log
grid of learning rates trained with `kaizen compare` (one seed, the config's full budget), ranked by the
validation accuracy of each run's best epoch (lowest validation loss; a diverged run scores 0). Prints the
suggestion, the grid's best rate, and the distance in decades for each rule.

    python benchmarks/lr_find_grid.py [--datasets digits,mnist] [--epochs 10]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import MNIST

import kaizen
from kaizen.doctor.lr_find import range_test

GRIDS = {  # 7 points, one decade apart, around each optimiser's usual rate
    "sgd": ["1e-4", "1e-3", "1e-2", "1e-1", "1", "10", "100"],
    "adam": ["1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1"],
}
BASE = [
    "model.preset=mlp",
    "model.hidden=[64,32]",
    "model.norm=none",
    "model.dropout=0",
    "schedule.name=constant",
    "train.device=cpu",
    "train.threads=1",
    "log.tensorboard=false",
    "log.plots=false",
    "log.progress=false",
]


def grid_best(overrides: list[str], grid: list[str], out: Path) -> tuple[float, dict[float, float]]:
    """(best rate, {rate: best validation accuracy}) from `kaizen compare` over the grid, one seed."""
    config = out / "base.yaml"
    config.write_text(yaml.safe_dump(kaizen.Config().override(overrides).to_dict()))
    command = [
        sys.executable,
        "-m",
        "kaizen",
        "compare",
        "-c",
        str(config),
        "--vary",
        f"optim.lr={','.join(grid)}",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--metric",
        "best.val_acc",
        "--out",
        str(out / "study"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    scores = {}
    for meta in (out / "study").rglob("meta.json"):
        run = kaizen.load_run(meta.parent)  # a run that diverged has no summary: it scores 0
        scores[run.config.optim.lr] = run.summary.get("best", {}).get("val_acc", 0.0)
    best = max(sorted(scores), key=lambda lr: scores[lr])  # ties: the lowest rate
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        if dataset == "mnist" and not MNIST.is_dir():
            continue
        data = (
            ["data.name=digits"]
            if dataset == "digits"
            else ["data.name=mnist", f"data.root={MNIST}", "data.fraction=0.25"]
        )
        for optimizer, grid in GRIDS.items():
            overrides = [*BASE, *data, f"optim.name={optimizer}", f"train.epochs={args.epochs}"]
            result = range_test(kaizen.Config().override(overrides))
            with tempfile.TemporaryDirectory() as tmp:
                best, scores = grid_best(overrides, grid, Path(tmp))
            distance = {
                rule: abs(math.log10(value / best)) if value else math.inf
                for rule, value in (("valley", result.suggestion), ("steepest", result.steepest))
            }
            rows.append((dataset, optimizer, result.suggestion, result.steepest, best, scores, distance))
            print(
                f"{dataset} {optimizer}: valley {result.suggestion:.2g}, steepest {result.steepest or 0:.2g}, "
                f"grid best {best:g} ({scores[best]:.1%}); grid {', '.join(f'{lr:g}: {acc:.1%}' for lr, acc in sorted(scores.items()))}",
                flush=True,
            )
    print(
        "\n| data | optimiser | valley | steepest slope | grid best (val acc) | valley off by | steepest off by |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset, optimizer, valley, steepest, best, scores, distance in rows:
        print(
            f"| {dataset} | {optimizer} | {valley:.2g} | {steepest or 0:.2g} | {best:g} ({scores[best]:.1%}) | "
            f"{distance['valley']:.2f} decades | {distance['steepest']:.2f} decades |"
        )


if __name__ == "__main__":
    main()
