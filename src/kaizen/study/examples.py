"""Per-example test results of a study's runs, for the paired test over test examples and seeds.

Every seed of a study is tested on the same test images (per split seed), so two variants can be compared
example by example. After a run finishes, the study keeps which test images it got right in
`<run>/test_correct.npy` (one bool per test image, in the split's order: a few kB), computed from the model the
run ended with. A run without the file (older kaizen, multi-task heads) simply has no per-example comparison.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from kaizen.errors import KaizenError
from kaizen.track import rundir

CORRECT_FILE = "test_correct.npy"


def write_test_correct(run_dir: Path | str) -> Path:
    """Evaluate the finished run's model on its test split and save each test image's correctness."""
    from kaizen.data import load_data
    from kaizen.evaluate import predict_proba
    from kaizen.run import load_run

    run = load_run(run_dir)
    model, _ = run.model()
    data = load_data(run.config.data, "cpu")
    probabilities = predict_proba(model, data.pixels["test"], run.config.train.eval_batch_size, data.prepare)
    correct = (probabilities.argmax(1) == data.y_test).numpy()
    path = Path(run_dir) / CORRECT_FILE
    buffer = io.BytesIO()
    np.save(buffer, correct)
    rundir.atomic_write_bytes(path, buffer.getvalue())  # never through a link planted in the run
    return path


def read_test_correct(run_dir: Path | str) -> np.ndarray | None:
    """The run's per-example test correctness, or None when it was not kept (or cannot be read)."""
    path = Path(run_dir) / CORRECT_FILE
    if not path.is_file():
        return None
    try:
        correct = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise KaizenError(f"cannot read {path}: {error}") from None
    return correct.astype(bool) if correct.ndim == 1 else None
