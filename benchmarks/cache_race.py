"""Concurrent runs on one image folder: does any process ever load pixels other than its files' own?

Two worker processes load one folder at once with kaizen's data loading (`kaizen.data.load_data`, what every
run does first), sharing one image cache, and each compares every image it loaded (train, validation and
test) with a fresh decode of that image's file under its own settings. A pair is either two different
settings (data.resize crop against stretch: what `kaizen compare --vary data.resize=crop,stretch` runs) or
the same settings twice. Before half the pairs (at random) one image is rewritten with new pixels, so both
processes find the cache stale and race to decode and commit it; the second of each pair starts a random
0-0.3 s after the first, so it sometimes decodes too and sometimes reads what the first has just committed.
`--widen S` sleeps S seconds right after a process moves its decoded pixels into place (before its manifest
and before it reads them back), widening the window in which the other process can interleave: with kaizen
before issue 21 (one cache per folder, one `images.npy`) this gives wrong pixels.

Prints, per kind of pair: pairs, loads that decoded and loads read from the cache, and the images whose pixels
differ from a fresh decode (target: 0).

    python benchmarks/cache_race.py [--pairs 200] [--images 48] [--widen 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SETTINGS = {"different": ("crop", "stretch"), "same": ("crop", "crop")}


def make_folder(root: Path, images: int) -> None:
    """`images` wide grey images in 2 classes: crop and stretch give different pixels of each."""
    rng = np.random.default_rng(0)
    for index in range(images):
        write(root / f"class{index % 2}" / f"{index:04d}.png", rng)


def write(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(path)


def worker(connection, root: str, cache: str, widen: float) -> None:
    """Load the folder when told (settings, start time); answer (wrong images, checked, from the cache)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    import kaizen
    from kaizen.data import folder as folder_module
    from kaizen.data import load_data

    logging.disable(logging.WARNING)  # "decoding again" is expected here: the pairs race on purpose
    if widen:  # a pause after the pixels are moved into place, before the manifest and the read-back
        replace = os.replace

        def slow_replace(source, target, *args, **kwargs):
            replace(source, target, *args, **kwargs)
            if Path(target).name.startswith("images"):
                time.sleep(widen)

        os.replace = slow_replace
    while True:
        task = connection.recv()
        if task is None:
            return
        resize, start_at = task
        time.sleep(max(0.0, start_at - time.time()))
        overrides = [
            "data.name=folder",
            f"data.path={root}",
            f"data.cache={cache}",
            f"data.resize={resize}",
            "data.image_size=16",
            "data.val_split=0.2",
        ]
        data = load_data(kaizen.Config().override(overrides).data)
        wrong = checked = 0
        for split in ("train", "val", "test"):
            stored = data.pixels[split].numpy() if split in data.pixels else data.host_train.array
            decoded = folder_module.decode_many(data.paths[split], (16, 16), 1, resize)
            for index, item in enumerate(decoded):
                checked += 1
                wrong += item.pixels is None or not np.array_equal(stored[index], item.pixels)
        connection.send((wrong, checked, "from the cache" in data.source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=200, help="pairs of each kind (different, same settings)"
    )
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--widen", type=float, default=0.0, help="seconds of sleep after the pixels' commit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    jitter = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = Path(scratch) / "photos", Path(scratch) / "cache"
        make_folder(root, args.images)
        files = sorted(root.rglob("*.png"))
        context = multiprocessing.get_context("spawn")
        pipes, processes = [], []
        for _ in range(2):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker, args=(theirs, str(root), str(cache), args.widen))
            process.start()
            pipes.append(ours)
            processes.append(process)
        began = time.perf_counter()
        results = {}
        try:
            for kind, (first, second) in SETTINGS.items():
                totals = {"wrong": 0, "checked": 0, "cached": 0, "decoded": 0}
                for _ in range(args.pairs):
                    if rng.random() < 0.5:  # half the pairs find the cache stale and race to rebuild it
                        write(files[int(rng.integers(len(files)))], rng)
                    start_at = time.time() + 0.05
                    pipes[0].send((first, start_at))
                    pipes[1].send((second, start_at + jitter.uniform(0.0, 0.3)))
                    for pipe in pipes:
                        wrong, checked, cached = pipe.recv()
                        totals["wrong"] += wrong
                        totals["checked"] += checked
                        totals["cached" if cached else "decoded"] += 1
                results[kind] = totals
        finally:
            for pipe in pipes:
                pipe.send(None)
            for process in processes:
                process.join()
    seconds = time.perf_counter() - began
    print(
        f"{args.images} images, 16x16 grey, --widen {args.widen:g} s, {seconds:.0f} s, load {os.getloadavg()}"
    )
    print("| settings | pairs | loads decoded | loads from the cache | images checked | wrong pixels |")
    print("|---|---|---|---|---|---|")
    for kind, totals in results.items():
        label = " vs ".join(SETTINGS[kind])
        print(
            f"| {kind} ({label}) | {args.pairs} | {totals['decoded']} | {totals['cached']} | "
            f"{totals['checked']:,} | **{totals['wrong']}** |"
        )


if __name__ == "__main__":
    main()
