"""Using trained runs: evaluate one on a split, predict a file with one run or an ensemble of runs."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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
from kaizen.track import rundir

if TYPE_CHECKING:
    from kaizen.config import Config


class Run(Protocol):
    """What this module needs of a run (kaizen.run.Run is one): its folder, its config and its model. A protocol,
    so that Run.predict can call down into this module without a circle of imports."""

    path: Path
    config: Config

    def model(self) -> tuple[torch.nn.Module, dict]: ...


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


@dataclasses.dataclass
class Predictions:
    """What `Run.predict` returns: a label and the class probabilities of each image, in the order given."""

    labels: list[str]
    probabilities: np.ndarray  # N x classes, rows sum to 1
    class_names: list[str]
    files: list[str] | None = None  # the file of each row, where the inputs were files

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def confidences(self) -> np.ndarray:
        """The probability of each predicted label."""
        return self.probabilities.max(axis=1)


def _models(runs: list[Run]) -> list[tuple[torch.nn.Module, dict]]:
    """Each run's model and checkpoint record; an error when they cannot be ensembled."""
    if not runs:
        raise KaizenError("predict needs at least one run")
    models = [run.model() for run in runs]
    first_state = models[0][1]
    for run, (_, state) in zip(runs[1:], models[1:]):
        for key in ("input_shape", "num_classes"):
            if state[key] != first_state[key]:
                raise KaizenError(
                    f"cannot ensemble {runs[0].path.name} and {run.path.name}: "
                    f"{key} {first_state[key]} vs {state[key]}"
                )
    return models


def _average(runs: list[Run], models: list[tuple[torch.nn.Module, dict]], raw: np.ndarray, tta: int) -> torch.Tensor:
    """Probabilities averaged over the runs, each normalising with its own recorded mean and std."""
    from kaizen.data import normalize, to_float

    x = torch.from_numpy(to_float(raw))
    probs = torch.zeros(len(x), models[0][1]["num_classes"])
    for (model, state), run in zip(models, runs):
        probs += probabilities(run, model, normalize(x, state["mean"], state["std"]), tta)
    return probs / len(models)


def _image_bytes(image: object) -> io.BytesIO:
    """A PIL image or an H x W (x C) uint8 array as PNG bytes, so it is decoded exactly as files are."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise KaizenError(f"an image array must be H x W or H x W x C uint8, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise KaizenError(f"cannot predict a {type(image).__name__}: give image paths, PIL images or arrays")
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    stream.seek(0)
    return stream


def predict_images(runs: list[Run], images: Sequence[object] | object, tta: int = 0) -> Predictions:
    """Predict image files, folders, PIL images or uint8 arrays with one run or an ensemble (probabilities
    averaged); each image is decoded and resized as the first run's training images were."""
    from kaizen.data.folder import decode_image, read_image_inputs

    items = list(images) if isinstance(images, list | tuple) else [images]
    models = _models(runs)
    state = models[0][1]
    channels, height, width = (int(side) for side in state["input_shape"])
    resize = runs[0].config.data.resize
    if all(isinstance(item, str | Path) for item in items):
        raw, files = read_image_inputs(items, state["input_shape"], resize)
    else:
        decoded = [decode_image(_image_bytes(item), (height, width), channels, resize, None) for item in items]
        for index, item in enumerate(decoded):
            if item.pixels is None:
                raise KaizenError(f"image {index}: {item.problem}")
        raw, files = np.stack([item.pixels for item in decoded]), None
    probs = _average(runs, models, raw, tta).numpy()
    names = list(state["class_names"])
    return Predictions([names[i] for i in probs.argmax(1)], probs, names, files)


def predict_file(
    runs: list[Run], inputs: str | Path | Sequence[str | Path], out_path: str | Path | None, tta: int = 0
) -> dict[str, object]:
    """Predict every image of `inputs` with the runs (probabilities averaged) and write `out_path`.

    `inputs` is one CSV, NPZ or IDX file, or image files and folders (decoded and resized as the run's
    training data). CSV input gets Kaggle's `ImageId,Label`; images get `path,label,probability`; other
    inputs get `index,label,confidence`. Without `out_path` nothing is written and the report's `text` holds
    the CSV. Returns a small report.
    """
    from kaizen.data import read_inputs
    from kaizen.data.folder import is_image_input, read_image_inputs

    inputs = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    models = _models(runs)
    first_state = models[0][1]
    files = None
    if any(is_image_input(item) for item in inputs):
        raw, files = read_image_inputs(inputs, first_state["input_shape"], runs[0].config.data.resize)
        kind = "images"
    elif len(inputs) == 1:
        raw, kind = read_inputs(str(inputs[0]), tuple(first_state["input_shape"]))
    else:
        raise KaizenError("several inputs must be image files or folders; give one CSV, NPZ or IDX file")
    probs = _average(runs, models, raw, tta)
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
    counts = np.bincount(labels.numpy(), minlength=first_state["num_classes"])
    report = {"images": len(raw), "runs": len(runs), "counts": counts.tolist()}
    if out_path is None:
        return {**report, "out": None, "text": text.getvalue()}
    out_path = Path(out_path)
    try:
        rundir.atomic_write_text(out_path, text.getvalue())
    except OSError as error:
        raise KaizenError(f"cannot write {out_path}: {error.strerror}") from None
    return {**report, "out": str(out_path)}


def _gone(path: str | None) -> bool:
    return path is not None and not Path(path).exists()
