"""Where a process pool starts to pay for decoding image files: inline against a pool, by file count.

Writes N PNGs of 64x64 RGB (random pixels: the slowest to decode) and decodes the first n of them with
`kaizen.data.folder.decode_image` in this process and in a ProcessPoolExecutor as `decode_many` uses it,
for n in 64 .. N; prints the seconds of each and their ratio. POOL_MIN_FILES in kaizen/data/folder.py is
the smallest n where the pool won on the machine it was measured on.

    python benchmarks/decode_pool.py [--files 2048] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from kaizen.data import folder


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def inline(tasks: list) -> None:
    list(map(folder._decode_task, tasks))


def pooled(tasks: list) -> None:
    workers = min(os.cpu_count() or 1, 8)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(folder._decode_task, tasks, chunksize=max(1, len(tasks) // (workers * 16))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2048)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        paths = []
        for index in range(args.files):
            path = Path(work) / f"{index:05d}.png"
            Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        print(f"{os.cpu_count()} cores; {args.files} PNGs of {args.size}x{args.size}x3, decoded to 32x32x3")
        print(f"{'files':>6} {'inline s':>9} {'pool s':>8} {'pool/inline':>12}")
        count = 64
        while count <= args.files:
            tasks = [(path, (32, 32), 3, "crop", Image.MAX_IMAGE_PIXELS) for path in paths[:count]]
            inline(tasks[:8])  # warm the file cache and Pillow's plugins
            first, second = timed(inline, tasks), timed(pooled, tasks)
            print(f"{count:>6} {first:>9.3f} {second:>8.3f} {second / first:>12.2f}")
            count *= 2


if __name__ == "__main__":
    main()
