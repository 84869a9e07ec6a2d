"""What single moves are worth at full length: the ground truth improve's race tries to find.

For a start config of benchmarks/improve.py (reduced) and a list of moves (overrides separated by `;`), train
the start and every move at full length on 5 seeds and print the paired gain over the start (mean and 95%
t-interval over the seeds) in validation and in test accuracy. No budget, no race: this is what the adoption rule
could prove with enough seeds, and what the short rungs of a race should rank first.

    python benchmarks/improve_moves.py mnist-10k "augment=kaggle" "augment=kaggle;train.epochs=20" "train.epochs=20"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from improve import DATASETS, start_config
from scipy import stats

import kaizen


def interval(gains: list[float]) -> tuple[float, float, float]:
    mean = statistics.mean(gains)
    if len(set(gains)) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("moves", nargs="+", help="overrides of one move, separated by ';'")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"moves-{args.dataset}-"))
    cfg = start_config(args.dataset, True, work)
    start: tuple[list[float], list[float]] | None = None
    for move in [[], *(m.split(";") for m in args.moves)]:
        vals, tests = [], []
        for seed in range(args.seeds):
            run = kaizen.train(
                cfg.override([*move, f"train.seed={seed}", "log.plots=false", "log.tensorboard=false"])
            )
            which = "best" if run.summary.get("checkpoint") == "best.pt" else "final"
            vals.append(run.summary[which]["val_acc"])
            tests.append(run.summary["test"]["acc"])
        start = start or (vals, tests)
        shown = []
        for name, now, base in (("val", vals, start[0]), ("test", tests, start[1])):
            mean, low, high = interval([a - b for a, b in zip(now, base)])
            shown.append(
                f"{name} {100 * statistics.mean(now):6.2f} gain {100 * mean:+5.2f} [{100 * low:+5.2f}, {100 * high:+5.2f}]"
            )
        print(f"{';'.join(move) or 'start':60s} " + "  ".join(shown), flush=True)


if __name__ == "__main__":
    main()
