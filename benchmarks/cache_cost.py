"""What checking costs: the image cache's checksum on each load, and the run directory's lock on each run.

1. Checksum. A folder is decoded into the cache once; then loading it from the cache (`load_data`: scan, file
   digest, manifest, map, CRC-32 of every cached pixel) is timed with the check and with the check skipped
   (the checksum function replaced by one that returns the manifest's value), alternating, median of
   `--repeats`, in this one process. Folders: the default job's data as a folder (scikit-learn's 1,797 8x8
   digits written as PNGs) and `--images` random 32x32 RGB PNGs (default 20,000, the folder of
   data_scale.py). The default job itself (`kaizen train`, the bundled digits arrays) has no image cache.
2. Lock. `RunLock` acquire + release (an O_EXCL create, a JSON write, a read and an unlink), mean of 1,000,
   against the wall time of one default-job run (`kaizen train` with its defaults, one thread) and of one
   run with the lock made a no-op, both in this process.

    python benchmarks/cache_cost.py [--images 20000] [--repeats 5] [--skip-train]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import kaizen
from kaizen.data import imagecache, load_data
from kaizen.track import rundir


def digits_folder(root: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8), "L").save(folder / f"{index:04d}.png")


def random_folder(root: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(images):
        folder = root / ("test" if index % 6 == 5 else "train") / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:06d}.png")


def cached_load_seconds(root: Path, cache: Path, repeats: int) -> tuple[float, float, int]:
    """(median load seconds with the checksum, without it, cached bytes)."""
    cfg = kaizen.Config().override(["data.name=folder", f"data.path={root}", f"data.cache={cache}"]).data
    first = load_data(cfg)  # decodes and writes the cache
    assert "decoded" in first.source
    real = imagecache.pixels_checksum
    with_check, without = [], []
    for _ in range(repeats):
        for timings, skip in ((with_check, False), (without, True)):
            if skip:
                manifest = next(cache.rglob("manifest.json"))
                stored = json.loads(manifest.read_text())["crc32"]
                imagecache.pixels_checksum = lambda images, stored=stored: stored
            began = time.perf_counter()
            data = load_data(cfg)
            timings.append(time.perf_counter() - began)
            imagecache.pixels_checksum = real
            assert "from the cache" in data.source
    size = sum(path.stat().st_size for path in cache.rglob("images-*.npy"))
    return statistics.median(with_check), statistics.median(without), size


def lock_seconds(folder: Path, count: int = 1000) -> float:
    lock = rundir.RunLock()
    began = time.perf_counter()
    for _ in range(count):
        lock.acquire(folder)
        lock.release()
    return (time.perf_counter() - began) / count


def default_run_seconds(runs: Path, locked: bool) -> float:
    real_acquire = rundir.RunLock.acquire
    if not locked:
        rundir.RunLock.acquire = lambda self, run_dir: None
    try:
        began = time.perf_counter()
        kaizen.train(
            kaizen.Config().override([f"log.runs_dir={runs}", "train.threads=1", "log.progress=false"])
        )
        return time.perf_counter() - began
    finally:
        rundir.RunLock.acquire = real_acquire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="leave out the default-job runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print(f"load average {os.getloadavg()}")
        print("| folder | cached bytes | load with CRC-32 | load without | ratio |")
        print("|---|---|---|---|---|")
        for name, make in (
            ("digits as PNGs (1,797 8x8)", digits_folder),
            (f"{args.images:,} random 32x32x3 PNGs", lambda root: random_folder(root, args.images)),
        ):
            root = scratch / name.split()[0]
            make(root)
            checked, unchecked, size = cached_load_seconds(root, scratch / f"cache-{root.name}", args.repeats)
            print(
                f"| {name} | {size / 2**20:,.1f} MiB | {checked * 1000:,.1f} ms | {unchecked * 1000:,.1f} ms | "
                f"{checked / unchecked:.3f} |"
            )
        lock = lock_seconds(scratch)
        print(f"\nRunLock acquire + release: {lock * 1e6:,.0f} µs (mean of 1,000)")
        if not args.skip_train:
            unlocked = default_run_seconds(scratch / "runs", locked=False)
            locked = default_run_seconds(scratch / "runs", locked=True)
            print(
                f"default job (kaizen train, 1 thread): {locked:.1f} s locked, {unlocked:.1f} s without, "
                f"ratio {locked / unlocked:.3f}; the lock's own share {lock / locked:.1e}"
            )
        print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
