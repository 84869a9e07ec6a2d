"""Image folders at CIFAR scale: decode time (first run) against the decoded cache (second run), and memory.

Generates a folder of N random 32x32 RGB PNGs in 10 classes (default 20,000), then in fresh processes:
1. loads it with an empty cache: scan, decode (process pool) and write the cache;
2. loads it again: scan, check the manifest, read the cache;
and reports each one's wall time and peak resident memory (also above the process's peak after importing
torch and kaizen) against the uint8 size of the pixels. load_data still returns float32 tensors, so memory is
several times the uint8 size.

    python benchmarks/data_scale.py [--images 20000] [--folder /tmp/kaizen-scale]
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


def make_folder(root: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(images):
        folder = root / f"class{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:06d}.png")


def load(root: Path, cache: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(root), str(cache)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument(
        "--folder", type=Path, default=None, help="where to generate (default: a temp folder)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = args.folder or Path(work) / "folder"
        if not (root / "class0").is_dir():
            start = time.perf_counter()
            make_folder(root, args.images)
            print(f"generated {args.images:,} PNGs of 32x32x3 in {time.perf_counter() - start:.1f} s")
        cache = Path(work) / "cache"
        uint8_mib = args.images * 3 * 32 * 32 / 2**20
        for name in ("first run (decode + write cache)", "second run (from cache)"):
            result = load(root, cache)
            print(
                f"{name}: {result['seconds']:.1f} s, peak RSS {result['peak'] / 2**20:,.0f} MiB, "
                f"{(result['peak'] - result['before']) / 2**20:,.0f} MiB above the imports "
                f"({result['images']:,} images, uint8 pixels {uint8_mib:,.0f} MiB)"
            )


if __name__ == "__main__":
    main()
