"""Export a run's model to use elsewhere (seed 002): an ONNX file, checked against PyTorch with onnxruntime.

The exported graph takes pixel values in [0, 1] (float32, N×C×H×W, any N), normalises them with the run's
training statistics and returns `logits` and `probabilities`, so a user needs nothing of kaizen to run it.
The class names, input shape and normalisation are stored in the file's metadata. The file is written only
after onnxruntime reproduces PyTorch's outputs on real test images within `TOLERANCE`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.errors import KaizenError
from kaizen.run import Run

TOLERANCE = 1e-4
OPSET = 17
CHECK_IMAGES = 64


class PixelsToClasses(nn.Module):
    """A classifier with its input normalisation built in: pixels in [0, 1] -> (logits, probabilities)."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model((pixels - self.mean) / self.std)
        return logits, torch.softmax(logits, dim=1)


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: Path
    size: int  # bytes
    input_shape: list[int]
    images: int
    image_source: str
    max_diff: float
    opset: int = OPSET


def require_onnx() -> tuple[Any, Any]:
    """Return the onnx and onnxruntime modules, or raise a KaizenError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise KaizenError(
            f"ONNX export needs onnx and onnxruntime ({error.name} is missing): pip install 'kaizen[export]'"
        ) from None
    return onnx, onnxruntime


def check_images(run: Run, state: dict[str, Any], count: int = CHECK_IMAGES) -> tuple[torch.Tensor, str]:
    """Return up to `count` of the run's test images as pixels in [0, 1], and where they came from.

    Where the run's data cannot be read any more, random pixels of the right shape stand in.
    """
    from kaizen.data import load_data

    try:
        data = load_data(run.config.data, "cpu")
    except KaizenError:
        generator = torch.Generator().manual_seed(0)
        return torch.rand(
            count, *state["input_shape"], generator=generator
        ), "random images (data unavailable)"
    x = data.x_test[:count]
    shape = (1, -1, 1, 1)
    pixels = x * torch.tensor(data.std).view(shape) + torch.tensor(data.mean).view(shape)
    return pixels.float(), f"test images of {run.config.data.name}"


def export_onnx(run: Run, out_path: str | Path, images: int = CHECK_IMAGES) -> ExportReport:
    """Write the run's model to `out_path` as ONNX and check it with onnxruntime; return the report.

    Raises a KaizenError (and writes nothing) when onnx/onnxruntime are missing, the checkpoint is missing,
    the folder cannot be written, or onnxruntime's outputs differ from PyTorch's by more than TOLERANCE.
    """
    onnx, onnxruntime = require_onnx()
    model, state = run.model()
    exported = PixelsToClasses(model, state["mean"], state["std"]).eval()
    pixels, source = check_images(run, state, images)
    out_path = Path(out_path)
    try:
        handle, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as error:
        raise KaizenError(f"cannot write {out_path}: {error.strerror}") from None
    os.close(handle)
    tmp = Path(name)
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; an exported model is as readable as any file
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 prefers its dynamo exporter, which needs onnxscript; the TorchScript exporter
            # handles every kaizen layer offline and warns that it is the legacy path.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                exported,
                (pixels[:1],),
                str(tmp),
                dynamo=False,
                input_names=["images"],
                output_names=["logits", "probabilities"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
                opset_version=OPSET,
            )
        proto = onnx.load(str(tmp))
        metadata = {
            "producer": "kaizen",
            "run": str(run.path),
            "class_names": json.dumps(state["class_names"]),
            "input_shape": json.dumps(list(state["input_shape"])),
            "input": "pixel values in [0, 1], float32, N x C x H x W",
            "mean": json.dumps(state["mean"]),
            "std": json.dumps(state["std"]),
        }
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"images": pixels.numpy()})
        with torch.no_grad():
            expected = exported(pixels)
        max_diff = max(
            float((torch.from_numpy(got) - want).abs().max())
            for got, want in zip(outputs, expected, strict=True)
        )
        if not max_diff <= TOLERANCE:
            raise KaizenError(
                f"onnxruntime's outputs differ from PyTorch's by {max_diff:.2e} (> {TOLERANCE:g}) on {source}; "
                f"{out_path} not written"
            )
        os.replace(tmp, out_path)
    except OSError as error:
        raise KaizenError(f"cannot write {out_path}: {error.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(
        path=out_path,
        size=out_path.stat().st_size,
        input_shape=list(state["input_shape"]),
        images=len(pixels),
        image_source=source,
        max_diff=max_diff,
    )
