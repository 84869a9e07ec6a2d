"""Data loading time: kaizen's Kaggle CSV reader and the default digits load, against plain numpy in one run.

The CSV is the size of Kaggle's train.csv (42,000 rows x 785 columns, ~75 MB; 1,000 distinct rows repeated).
The baseline is `np.loadtxt` of the same file; the ratio (kaizen / numpy) is what to compare between machines.

    python benchmarks/data_load.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine

from kaizen import registry
from kaizen.config import DataConfig
from kaizen.data import load_data


def kaggle_sized_csv(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = (rng.random((1_000, 784)) < 0.2) * rng.integers(0, 256, (1_000, 784))
    table = io.StringIO()
    np.savetxt(table, np.column_stack([np.arange(1_000) % 10, x]), fmt="%d", delimiter=",")
    header = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
    path = folder / "train.csv"
    path.write_text(header + table.getvalue() * 42)
    return path


def seconds(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        path = kaggle_sized_csv(Path(folder))
        kaizen_csv, numpy_csv, digits = [], [], []
        for _ in range(args.rounds):  # alternate, so drift in machine speed hits both alike
            kaizen_csv.append(
                seconds(lambda: registry.DATASETS.create("csv", DataConfig(name="csv", path=str(path))))
            )
            numpy_csv.append(seconds(lambda: np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64)))
            digits.append(seconds(lambda: load_data(DataConfig())))
    k, n = statistics.median(kaizen_csv), statistics.median(numpy_csv)
    print(f"Kaggle-sized CSV (42,000 x 785): kaizen {k:.2f} s, np.loadtxt {n:.2f} s, ratio {k / n:.2f}")
    print(f"digits load_data (default job's data): {statistics.median(digits) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
