"""Image folders at CIFAR scale: decode time, cache-load time, training in memory against streamed, memory.

Generates a folder of N random 32x32 RGB PNGs in 10 classes (default 20,000; train/ and test/ folders, a
sixth for test), then in fresh processes:
1. loads it with an empty cache: scan, decode (process pool) and write the cache;
2. loads it again: scan, check the manifest, read the cache;
3. trains `--epochs` of a small CNN (simple_cnn) with the images in memory (uint8 on the device);
4. trains the same with data.max_memory a quarter of the uint8 data, so the training images are streamed from
   the memory-mapped cache;
5. trains the same on a folder of 3,000 such images: the memory of one model (weights, optimiser, activations,
   threads; its own pixels subtracted), the baseline the two above are measured against. Evaluation batches
   are 256 images in every run (train.eval_batch_size), so that splits larger than the baseline's do not
   count the activations of larger batches as data;
and reports each one's wall time and peak resident memory (also above the process's peak after importing
torch and kaizen) against the uint8 size of the pixels, and the training images/s streamed against in memory
(target >= 0.9x; the same seed gives the same metrics, which is checked). Targets: loading, and training in
memory above the one-model baseline, <= 1.3x the uint8 pixels; streaming above the baseline <= the budget.

    python benchmarks/data_scale.py [--images 20000] [--folder /tmp/kaizen-scale] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
SMALL = (
    3_000  # images in the one-model baseline's folder (its test split: 500, at least one evaluation batch)
)

LOAD = """
import json, resource, sys, time
import kaizen
from kaizen.data import load_data
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # after importing torch and kaizen
start = time.perf_counter()
cfg = kaizen.Config().override(["data.name=folder", f"data.path={sys.argv[1]}", f"data.cache={sys.argv[2]}"])
data = load_data(cfg.data)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
n = len(data.y_train) + len(data.y_val) + len(data.y_test)
print(json.dumps({"seconds": seconds, "peak": peak, "before": before, "images": n, "shape": list(data.input_shape),
                  "source": data.source}))
"""


TRAIN = """
import csv, json, resource, sys
import kaizen
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
root, cache, runs, epochs, *extra = sys.argv[1:]
cfg = kaizen.Config().override([
    "data.name=folder", f"data.path={root}", f"data.cache={cache}", "model.preset=simple_cnn",
    f"train.epochs={epochs}", "train.eval_batch_size=256", "log.plots=false", "log.progress=false",
    f"log.runs_dir={runs}", *extra,
])
run = kaizen.train(cfg)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with (run.path / "metrics.csv").open() as stream:
    rows = [row for row in csv.DictReader(stream)]
train = [row for row in rows if row["split"] == "train"]
seconds = sum(float(row["seconds"]) for row in train)
metrics = [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
print(json.dumps({"images_per_s": run.summary["data"]["train"] * len(train) / seconds, "peak": peak,
                  "before": before, "metrics": metrics, "source": run.summary["data"]["source"]}))
"""


def make_folder(root: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(images):
        folder = root / ("test" if index % 6 == 5 else "train") / f"class{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:06d}.png")


def child(script: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--folder", type=Path, default=None, help="where to generate (default: a temp folder)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = args.folder or Path(work) / "folder"
        if not (root / "train" / "class0").is_dir():
            start = time.perf_counter()
            make_folder(root, args.images)
            print(f"generated {args.images:,} PNGs of 32x32x3 in {time.perf_counter() - start:.1f} s")
        cache = Path(work) / "cache"
        uint8 = args.images * 3 * 32 * 32
        for name in ("first run (decode + write cache)", "second run (from cache)"):
            result = child(LOAD, str(root), str(cache))
            print(
                f"{name}: {result['seconds']:.1f} s, peak RSS {mib(result['peak'])}, "
                f"{mib(result['peak'] - result['before'])} above the imports "
                f"= {(result['peak'] - result['before']) / uint8:.2f}x the uint8 pixels {mib(uint8)} "
                f"({result['images']:,} images; target <= 1.3x)"
            )
        budget = uint8 // 4  # a quarter of the data: the training images (3/4 of it) do not fit
        small = Path(work) / "small"
        make_folder(small, SMALL)
        runs = Path(work) / "runs"
        baseline = child(TRAIN, str(small), str(cache), str(runs / "one-model"), str(args.epochs))
        model = baseline["peak"] - baseline["before"] - SMALL * 3 * 32 * 32
        print(
            f"one model ({SMALL} images): peak RSS {mib(baseline['peak'])}, {mib(model)} above the imports "
            "and its own uint8 pixels"
        )
        modes = {"in memory": [], "streamed": [f"data.max_memory={budget}"]}
        results = {}
        for name, extra in modes.items():
            results[name] = result = child(
                TRAIN, str(root), str(cache), str(runs / name.replace(" ", "-")), str(args.epochs), *extra
            )
            above = result["peak"] - result["before"]
            print(
                f"training {name}: {result['images_per_s']:,.0f} images/s, peak RSS {mib(result['peak'])}, "
                f"{mib(above)} above the imports, {mib(above - model)} above one model "
                + (
                    f"(budget {mib(budget)}; target: within it)"
                    if extra
                    else f"= {(above - model) / uint8:.2f}x the uint8 pixels {mib(uint8)} (target <= 1.3x)"
                )
            )
        memory, streamed = results["in memory"], results["streamed"]
        assert "streamed from the host" in streamed["source"], streamed["source"]
        same = memory["metrics"] == streamed["metrics"]
        print(
            f"streamed / in memory: {streamed['images_per_s'] / memory['images_per_s']:.2f}x images/s "
            f"(target >= 0.9x); same metrics: {same}"
        )


if __name__ == "__main__":
    main()
