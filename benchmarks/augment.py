"""Augmentation: what `augment: kaggle` (seed 004's set) costs per epoch, and what it buys in accuracy.

kaggle_cnn on mnist-10k (or digits where MNIST is absent). The cost is the median training time per epoch with
and without augmentation, measured in alternating rounds in one process; the gain is the test accuracy of both
at the same epoch budget over several seeds.

    python benchmarks/augment.py [--root ../shared/data/mnist] [--seeds 3] [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import statistics

from common import CONFIGS, MNIST, dataset_overrides, train, train_seconds

import kaizen

QUIET = ["train.device=cpu"]


def epoch_seconds(cfg: kaizen.Config, augment: str, epochs: int) -> list[float]:
    _, rows = train(cfg, [f"augment={augment}", f"train.epochs={epochs}"])
    return train_seconds(rows)[1:]  # the first epoch warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting for the accuracy comparison")
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure the cost")
    args = parser.parse_args()

    cfg = kaizen.Config.load(CONFIGS / "kaggle_cnn.yaml").override([*dataset_overrides(args.root), *QUIET])
    plain, augmented = [], []
    for _ in range(args.rounds):
        plain += epoch_seconds(cfg, "none", 3)
        augmented += epoch_seconds(cfg, "kaggle", 3)
    base, extra = statistics.median(plain), statistics.median(augmented)
    print(f"kaggle_cnn on {cfg.data.name}, batch {cfg.train.batch_size}")
    print(
        f"seconds per epoch: none {base:.2f}, kaggle {extra:.2f} -> overhead {extra / base - 1:+.1%} (target <= 15%)"
    )
    if args.skip_accuracy:
        return
    for augment in ("none", "kaggle"):
        scores = [
            train(cfg, [f"augment={augment}", f"train.seed={seed}"])[0]["test"]["acc"]
            for seed in range(args.seeds)
        ]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        listed = ", ".join(f"{score:.2%}" for score in scores)
        print(f"test accuracy, augment={augment:<6} {statistics.mean(scores):.2%} ± {spread:.2%}  ({listed})")


if __name__ == "__main__":
    main()
