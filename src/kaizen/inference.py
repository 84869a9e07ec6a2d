"""Using trained runs: evaluate one on a split, predict a file with one run or an ensemble of runs."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kaizen.data.augment import for_test_time
from kaizen.errors import KaizenError
from kaizen.evaluate import (
    Evaluation,
    evaluate,
    mistake_files,
    plot_evaluation,
    predict_proba,
    predict_proba_tta,
)
from kaizen.run import Run
from kaizen.track import rundir


def probabilities(run: Run, model: torch.nn.Module, x: torch.Tensor, tta: int = 0) -> torch.Tensor:
    """Class probabilities of a run's model on normalised inputs; with `tta` > 0, averaged over that many
    augmented copies too (the run's own geometric augmentation)."""
    batch_size = run.config.train.eval_batch_size
    if tta > 0:
        return predict_proba_tta(model, x, for_test_time(run.config.augment), tta, batch_size)
    return predict_proba(model, x, batch_size)


def evaluate_run(run: Run, split: str = "test", tta: int = 0) -> tuple[Evaluation, list[Path]]:
    """Evaluate the run's model on a split of its own data; write the confusion matrix, the worst mistakes
    and eval_<split>.json into the run directory. Returns the evaluation and the paths written."""
    from kaizen.data import load_data

    model, state = run.model()
    try:
        data = load_data(run.config.data, "cpu")
    except KaizenError as error:
        moved = [key for key in ("path", "test_path") if _gone(getattr(run.config.data, key))]
        if not moved:
            raise
        raise KaizenError(f"{error}; if the data moved: kaizen eval {run.path} --set data.{moved[0]}=NEW") from None
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if len(y) == 0:
        raise KaizenError(f"the {split} split of {run.path} is empty")
    result = evaluate(probabilities(run, model, x, tta), y, data.class_names)
    if data.paths is not None:  # name the file of each example (and so of each mistake)
        result = dataclasses.replace(result, files=data.paths[split])
    mean = torch.tensor(state["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(state["std"]).view(1, -1, 1, 1)
    paths = plot_evaluation(result, x * std + mean, run.path, split)
    report = run.path / f"eval_{split}.json"
    rundir.write_json(
        report,
        {
            "split": split,
            "tta": tta,
            "n": result.count,
            "accuracy": result.accuracy,
            "loss": result.loss,
            "macro_f1": result.macro_f1,
            **({"mistakes": mistake_files(result, 32)} if result.files is not None else {}),
            "per_class": {
                name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                for name, p, r, f, n in zip(
                    result.class_names, result.precision, result.recall, result.f1, result.support
                )
            },
        },
    )
    return result, [*paths, report]


def _gone(path: str | None) -> bool:
    return path is not None and not Path(path).exists()


def predict_file(
    runs: list[Run], inputs: str | Path | Sequence[str | Path], out_path: str | Path, tta: int = 0
) -> dict[str, object]:
    """Predict every image of `inputs` with the runs (probabilities averaged) and write `out_path`.

    `inputs` is one CSV, NPZ or IDX file, or image files and folders (decoded and resized as the run's
    training data). CSV input gets Kaggle's `ImageId,Label`; images get `path,label,probability`; other
    inputs get `index,label,confidence`. Returns a small report.
    """
    from kaizen.data import normalize, read_inputs, to_float
    from kaizen.data.folder import is_image_input, read_image_inputs

    if not runs:
        raise KaizenError("predict needs at least one run")
    inputs = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    models = [run.model() for run in runs]
    first_state = models[0][1]
    for run, (_, state) in zip(runs[1:], models[1:]):
        for key in ("input_shape", "num_classes"):
            if state[key] != first_state[key]:
                raise KaizenError(
                    f"cannot ensemble {runs[0].path.name} and {run.path.name}: "
                    f"{key} {first_state[key]} vs {state[key]}"
                )
    files = None
    if any(is_image_input(item) for item in inputs):
        raw, files = read_image_inputs(inputs, first_state["input_shape"], runs[0].config.data.resize)
        kind = "images"
    elif len(inputs) == 1:
        raw, kind = read_inputs(str(inputs[0]), tuple(first_state["input_shape"]))
    else:
        raise KaizenError("several inputs must be image files or folders; give one CSV, NPZ or IDX file")
    x = torch.from_numpy(to_float(raw))
    probs = torch.zeros(len(x), first_state["num_classes"])
    for (model, state), run in zip(models, runs):
        probs += probabilities(run, model, normalize(x, state["mean"], state["std"]), tta)
    probs /= len(models)
    confidence, labels = probs.max(1)
    names = first_state["class_names"]

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if kind == "csv":
        writer.writerow(["ImageId", "Label"])
        writer.writerows((i + 1, names[label]) for i, label in enumerate(labels.tolist()))
    elif files is not None:
        writer.writerow(["path", "label", "probability"])
        writer.writerows(
            (path, names[label], f"{conf:.4f}")
            for path, label, conf in zip(files, labels.tolist(), confidence.tolist())
        )
    else:
        writer.writerow(["index", "label", "confidence"])
        writer.writerows(
            (i, names[label], f"{conf:.4f}")
            for i, (label, conf) in enumerate(zip(labels.tolist(), confidence.tolist()))
        )
    out_path = Path(out_path)
    try:
        rundir.atomic_write_text(out_path, text.getvalue())
    except OSError as error:
        raise KaizenError(f"cannot write {out_path}: {error.strerror}") from None
    counts = np.bincount(labels.numpy(), minlength=first_state["num_classes"])
    return {"images": len(x), "runs": len(runs), "out": str(out_path), "counts": counts.tolist()}
