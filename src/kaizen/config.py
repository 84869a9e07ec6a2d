"""The config schema: plain data, validated once at the boundary.

`Config()` is the default job (a CNN on the bundled digits set). `Config.load(path)` reads YAML,
`cfg.override(["optim.lr=3e-3"])` applies dotted overrides with type coercion, and every error is a
KaizenError naming the key, the bad value and, for unknown keys, the closest valid key.
"""

from __future__ import annotations

import difflib
import functools
import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from kaizen import registry
from kaizen.errors import KaizenError, KaizenWarning
from kaizen.registry import did_you_mean

MIN_IMAGE_SIDE = 8  # data.image_size: smaller images leave a conv preset nothing to pool
SUGGEST_CUTOFF = 0.7  # an unknown key gets a did-you-mean only when a valid one is this similar (difflib ratio)


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def owned_keys(cls) -> list[str]:
        """Keys the section takes beyond its fields (settings its registry's entries own)."""
        return []


def _registered(table: registry.Registry):
    def check(value: str) -> str:
        try:
            return table.check(value)
        except KaizenError as error:  # pydantic reports ValueErrors with the key they belong to
            raise ValueError(str(error)) from None

    return check


def _names_of(table: registry.Registry):
    """A field's `json_schema_extra`: the valid names, read from the registry when the schema is asked for."""

    def extra(schema: dict[str, Any]) -> None:
        schema["enum"] = table.names()

    return extra


# A name from one registry: the one validator of every such field (the error lists the valid names).
DatasetName = Annotated[str, AfterValidator(_registered(registry.DATASETS))]
ActivationName = Annotated[str, AfterValidator(_registered(registry.ACTIVATIONS))]
NormName = Annotated[str, AfterValidator(_registered(registry.NORMS))]
InitName = Annotated[str, AfterValidator(_registered(registry.INITS))]
PresetName = Annotated[str, AfterValidator(_registered(registry.PRESETS))]
TaskName = Annotated[str, AfterValidator(_registered(registry.TASKS))]
OptimizerName = Annotated[str, AfterValidator(_registered(registry.OPTIMIZERS))]
ScheduleName = Annotated[str, AfterValidator(_registered(registry.SCHEDULES))]


# ---------------------------------------------------------------------------------------------- data


class DataConfig(Section):
    name: DatasetName = Field(
        "digits", description="digits | mnist | fashion-mnist | kmnist | cifar10 | cifar100 | npz | csv | folder"
    )
    root: str = Field("data", description="folder holding IDX / CIFAR files (downloaded there when missing)")
    path: str | None = Field(None, description="training file for npz / csv; image folder for folder")
    test_path: str | None = Field(
        None, description="labelled test file (npz / csv) or test image folder (else test_split)"
    )
    channels: Literal["auto", 1, 3] = Field(
        "auto", description="folder: image channels; auto = 3 if any training image is in colour, else 1"
    )
    image_size: Literal["auto"] | Annotated[int, Field(gt=0)] | tuple[
        Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]
    ] = Field("auto", description="folder: N or [H, W] every image becomes; auto = the median, capped at 64")
    resize: Literal["crop", "pad", "stretch"] = Field(
        "crop", description="folder: keep the aspect and centre-crop (crop) or pad (pad), or stretch"
    )
    strict: bool = Field(False, description="folder: a corrupt or unreadable image is an error, not skipped")
    cache: str | None = Field(
        None, description="folder: directory of the decoded-image cache (default: the user's cache dir)"
    )
    max_memory: int | str | None = Field(
        None,
        description="bytes (or 2GB, 512MiB) the training images may take on the device; beyond it they are "
        "streamed from the host (default: half the device's free memory)",
    )
    download: bool = Field(True, description="download missing IDX files (official URLs, checksums)")
    test_split: float = Field(
        0.2, gt=0, lt=1, description="test fraction held out when a set has no test split"
    )
    val_split: float = Field(
        0.1, ge=0, description="validation fraction (<1) or count (>=1) of training data"
    )
    split_seed: int = Field(
        0, ge=0, description="seed of the test/validation split; fixed so seeds share a split"
    )
    fraction: float = Field(1.0, gt=0, le=1, description="train on this fraction of the training split")
    normalize: bool = Field(True, description="standardise inputs with the training split's mean and std")
    exclude: str | None = Field(
        None,
        description="an audit's issues.csv: drop the training examples it flags as label, duplicate or leak",
    )
    keep: str | None = Field(None, description="an audit's keep.txt: train only on the indices it lists")


    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, value: Any) -> Any:
        """auto, one side of at least 8 pixels, or [H, W]: said in those words, not in the schema's."""
        sides = list(value) if isinstance(value, list | tuple) else [value]
        if value == "auto" or (
            len(sides) in (1, 2) and all(isinstance(side, int) and not isinstance(side, bool) for side in sides)
            and all(side >= MIN_IMAGE_SIDE for side in sides)
        ):
            return value
        raise ValueError(f"give auto, an integer >= {MIN_IMAGE_SIDE} or [H, W] of such integers")

    @model_validator(mode="after")
    def _exclude_or_keep(self) -> DataConfig:
        if self.exclude is not None and self.keep is not None:
            raise ValueError("give data.exclude or data.keep, not both")
        return self

    @field_validator("path", "test_path", "cache", "exclude", "keep")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        """Files are found from anywhere: a run records where its data is, not where the command ran."""
        if value is None or not value.strip():
            return value
        return os.path.abspath(os.path.expanduser(value))

    @field_validator("max_memory", mode="before")
    @classmethod
    def _not_a_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML's true is an int to Python: a 1-byte budget nobody meant
            raise ValueError("give bytes or a size like 2GB or 512MiB (null: half the free memory), not true/false")
        return value

    @field_validator("max_memory")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        from kaizen.sizes import parse_bytes

        if value is not None:
            parse_bytes(value)  # raises ValueError naming the bad size
        return value

    @field_validator("val_split")
    @classmethod
    def _whole_count(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(
                "give a fraction of the training split (below 1, e.g. 0.15) or a whole count of examples (e.g. 150)"
            )
        return value


# --------------------------------------------------------------------------------------------- model


class DenseLayer(Section):
    type: Literal["dense"]
    units: int = Field(gt=0)
    activation: ActivationName | None = None


class ConvLayer(Section):
    type: Literal["conv"]
    filters: int = Field(gt=0)
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: int | Literal["same"] = 0
    dilation: int = Field(1, gt=0)
    activation: ActivationName | None = None


class ConvTransposeLayer(Section):
    type: Literal["conv_transpose"]
    filters: int = Field(gt=0)
    kernel: int = Field(2, gt=0)
    stride: int = Field(2, gt=0)
    padding: int = Field(0, ge=0)
    output_padding: int = Field(0, ge=0)
    activation: ActivationName | None = None


class PoolLayer(Section):
    type: Literal["pool"]
    kind: Literal["max", "avg", "lp"] = "max"
    size: int = Field(2, gt=0)
    stride: int | None = Field(None, gt=0)
    p: float = Field(2.0, gt=0, description="norm order of lp pooling")


class GlobalPoolLayer(Section):
    type: Literal["global_pool"]
    kind: Literal["avg", "max"] = "avg"


class FlattenLayer(Section):
    type: Literal["flatten"]


class DropoutLayer(Section):
    type: Literal["dropout"]
    rate: float | None = Field(None, ge=0, lt=1, description="defaults to model.dropout")


class NormLayer(Section):
    type: Literal["norm"]
    kind: NormName | None = Field(None, description="defaults to model.norm")


class ActivationLayer(Section):
    type: Literal["activation"]
    name: ActivationName | None = Field(None, description="defaults to model.activation")


class ResidualLayer(Section):
    type: Literal["residual"]
    filters: int = Field(gt=0)
    stride: int = Field(1, gt=0)


LayerSpec = Annotated[
    Union[  # noqa: UP007 - a discriminated union reads better spelled out
        DenseLayer,
        ConvLayer,
        ConvTransposeLayer,
        PoolLayer,
        GlobalPoolLayer,
        FlattenLayer,
        DropoutLayer,
        NormLayer,
        ActivationLayer,
        ResidualLayer,
    ],
    Field(discriminator="type"),
]


class TaskSpec(Section):
    """One task of a multi-task model: `class` is the classifier itself; the others get their own head."""

    name: TaskName = Field(description="a task in registry.TASKS", json_schema_extra=_names_of(registry.TASKS))
    weight: float = Field(1.0, ge=0, description="weight of this task's loss in the training objective")



class ModelConfig(Section):
    preset: PresetName | None = Field("vgg_small", description="a preset name, or null to build model.layers")
    layers: list[LayerSpec] | None = Field(
        None, description="Keras-like layer list; kaizen appends the classifier (flatten + dense to classes)"
    )
    hidden: list[int] = Field([40, 20], description="hidden layer widths of the mlp preset")
    activation: ActivationName = "relu"
    leaky_slope: float = Field(0.01, ge=0, description="negative slope of leaky_relu")
    norm: NormName = "batch"
    norm_position: Literal["before", "after"] = Field(
        "before", description="norm before/after the activation"
    )
    groups: int = Field(8, gt=0, description="channel groups of group norm")
    dropout: float = Field(0.3, ge=0, lt=1)
    tasks: list[TaskSpec] = Field(
        [],
        description="multi-task: [{name: parity, weight: 0.5}, ...] heads on the shared trunk, beside the "
        "classifier (`class`, weight 1 unless listed); empty: the classifier alone",
    )
    backbone: str | None = Field(
        None, description="a timm architecture (resnet18, efficientnet_lite0, ...) instead of a preset; "
        "its classifier becomes kaizen's head (needs kaizen[backbones])",
    )
    pretrained: bool | str = Field(
        False, description="backbone weights: true (timm's cache or hub) or a .safetensors / .pth state dict"
    )


    @model_validator(mode="before")
    @classmethod
    def _layers_without_preset(cls, value: Any) -> Any:
        """A layer list given without a preset builds that list (the default preset steps aside)."""
        if isinstance(value, dict) and value.get("layers") and "preset" not in value:
            return {**value, "preset": None}
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """A bare string such as `flatten` stands for `{type: flatten}`."""
        if isinstance(value, list):
            return [{"type": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(width <= 0 for width in value):
            raise ValueError("hidden widths must be positive")
        return value

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, value: list[TaskSpec]) -> list[TaskSpec]:
        names = [task.name for task in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"task '{repeated[0]}' is listed twice")
        return value

    @model_validator(mode="after")
    def _preset_or_layers(self) -> ModelConfig:
        if self.backbone is not None:
            if self.layers:
                raise ValueError("give model.backbone or model.layers, not both")
            default = type(self).model_fields["preset"].default
            if self.preset not in (None, default):
                raise ValueError("give model.backbone or model.preset, not both (set model.preset: null)")
            self.__dict__["preset"] = None  # the backbone replaces the default preset; config.yaml says so
            return self
        if self.pretrained is not False:
            raise ValueError("model.pretrained needs model.backbone (a timm architecture)")
        if self.preset is None and not self.layers:
            raise ValueError(
                "model.preset is null and model.layers is empty: give a preset (model.preset=mlp) or a layer "
                "list (model.layers=[...])"
            )
        if self.preset is not None and self.layers:
            raise ValueError(
                f"model.preset '{self.preset}' and model.layers are both given: keep one (in a YAML file, "
                "set model.preset: null to build the layer list; with --set, the later of the two wins)"
            )
        return self


class InitConfig(Section):
    weights: InitName = Field("default", description="weight initialisation of dense and conv layers")
    std: float = Field(0.01, gt=0, description="standard deviation of `normal`")
    bias: float | None = Field(None, description="constant bias; null keeps the framework default")



# ------------------------------------------------------------------------------------ augmentation

# Seed 004's ImageDataGenerator(rotation_range=8, width_shift_range=0.08, shear_range=0.3,
# height_shift_range=0.08, zoom_range=0.08). Keras of 2017 read shear_range in radians.
AUGMENT_PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "kaggle": {"rotation": 8, "width_shift": 0.08, "height_shift": 0.08, "shear": 0.3, "zoom": 0.08},
}


class AugmentConfig(Section):
    """Training-time augmentation; every setting 0/false is none. Evaluation is never augmented.

    The settings are those the entries of registry.AUGMENTATIONS own (each op's `fields` and `settings`, with
    their defaults and bounds): adding an op is its entry alone. They are filled in and checked when a config
    is made, like every registry name.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @classmethod
    def owned_keys(cls) -> list[str]:
        return list(augment_params())

    @model_validator(mode="before")
    @classmethod
    def _settings(cls, value: Any) -> Any:
        """`augment: kaggle` (or `--set augment=kaggle`) stands for that preset's values, `none` for no
        augmentation; every setting is checked against its op's Param and the unset ones take their defaults."""
        if isinstance(value, str):
            if value not in AUGMENT_PRESETS:
                raise ValueError(
                    f"unknown augmentation preset '{value}'; valid: {', '.join(AUGMENT_PRESETS)}"
                )
            value = dict(AUGMENT_PRESETS[value])
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            raise ValueError(f"augment must be a preset name or a mapping of settings, not {value!r}")
        params = augment_params()
        for key in value:
            if key not in params:
                valid = list(params)
                raise ValueError(
                    f"unknown augmentation setting '{key}'{did_you_mean(key, valid)}; valid: {', '.join(valid)}"
                )
        return {name: _checked(name, param, value.get(name, param.default)) for name, param in params.items()}


def augment_params() -> dict[str, registry.Param]:
    """Every augmentation setting, by name, in the ops' registration order (their fields, then settings)."""
    table = registry.AUGMENTATIONS
    return {
        name: param
        for op in table.names()
        for name, param in (*table.traits(op).fields.items(), *table.traits(op).settings.items())
    }


@functools.cache
def _adapter(param: registry.Param) -> TypeAdapter:
    """The validator of one setting: the type of its default (a bool strictly), within its bounds."""
    kind = type(param.default)
    bounds = {key: getattr(param, key) for key in ("ge", "gt", "le", "lt") if getattr(param, key) is not None}
    return TypeAdapter(Annotated[kind, Field(strict=kind is bool, **bounds)])


def _checked(name: str, param: registry.Param, value: Any) -> Any:
    """`value` as the setting's type (that of its default), within its bounds; ValueError naming it otherwise."""
    try:
        return _adapter(param).validate_python(value)
    except ValidationError as error:
        raise ValueError(f"{name} = {value!r}: {error.errors()[0]['msg']}") from None


# ---------------------------------------------------------------------------------- optimisation


class OptimConfig(Section):
    name: OptimizerName = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum of the momentum and nesterov optimisers")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(
        0.0, ge=0, description="decay of weights (not biases or norms); decoupled in adamw"
    )
    kernel: Literal["auto", "fused", "foreach", "per_tensor"] = Field(
        "auto",
        description="the optimiser's implementation, all the same update: auto = fused where torch has it, "
        "else foreach (multi-tensor)",
    )


    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError("betas must lie in [0, 1)")
        return value


class ScheduleConfig(Section):
    name: ScheduleName = Field(
        "cosine", description="a shape in registry.SCHEDULES", json_schema_extra=_names_of(registry.SCHEDULES)
    )
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0, composes with any schedule")
    step_epochs: int = Field(10, gt=0, description="step: decay every this many epochs")
    gamma: float | None = Field(
        None, gt=0, le=1, description="decay factor; null: the shape's default (its `decay` trait)"
    )
    min_lr: float = Field(0.0, ge=0, description="floor of cosine and plateau")
    patience: int = Field(3, ge=0, description="plateau: epochs without val_loss improvement before decaying")
    cycles: int = Field(
        1,
        ge=1,
        description="cyclic: cosine cycles with warm restarts (must divide train.epochs); a snapshot "
        "checkpoint checkpoints/snapshot-<k>.pt at the end of each, for snapshot ensembles",
    )



class RegConfig(Section):
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights (not biases), added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights (not biases); l1 + l2 is elastic net")
    activation_sparsity: float = Field(0.0, ge=0, description="weight of mean(log(1 + h^2)) on activations")
    sparsity_layers: list[str] = Field(["act*"], description="name patterns of the layers it applies to")
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class TrainConfig(Section):
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(2048, gt=0)

    @field_validator("batch_size")
    @classmethod
    def _two_per_batch(cls, value: int) -> int:
        if value < 2:  # checked here so that a compare refuses such a variant before any run starts
            raise ValueError(
                "a training batch needs at least 2 examples: batch norm normalises over the batch, and a lone "
                "example is left out of the epoch; use 2 or more"
            )
        return value
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="bfloat16 autocast in the forward pass (CPU and CUDA); auto: on where the device computes "
        "bf16 natively (CUDA with bf16, CPUs with AVX512-BF16/AMX) and the model costs at least 1M "
        "multiply-adds per example (below that the casts cost more than they save)",
    )
    channels_last: bool = Field(True, description="channels-last memory format for conv models")
    compile: bool = Field(
        False, description="torch.compile the model for the training step (falls back, saying why, if unavailable)"
    )
    cuda_graphs: bool = Field(
        False, description="with train.compile on CUDA: replay the step as CUDA graphs (mode reduce-overhead)"
    )
    clip_norm: float | None = Field(None, gt=0, description="clip gradients to this global L2 norm")
    clip_value: float | None = Field(None, gt=0, description="clip each gradient element to +-this value")
    threads: int | None = Field(None, gt=0, description="CPU threads (default: torch's choice)")
    bootstrap: bool = Field(
        False, description="bagging: train on a bootstrap resample (with replacement, seeded by train.seed)"
    )
    sample_weights: str | None = Field(
        None,
        description="boosting: .npy of one non-negative weight per training example (training-split order); "
        "each example's loss counts by its weight",
    )
    folds: int | None = Field(
        None,
        ge=2,
        description="stacking: cut the training data into this many stratified folds (seeded by "
        "data.split_seed) and train on all but train.fold",
    )
    fold: int = Field(0, ge=0, description="the held-out fold (0-based) when train.folds is set")
    score_test: bool = Field(
        True,
        description="score the test split when the run ends; false leaves it untouched (kaizen improve's "
        "trials: the test split is kept for the final comparison)",
    )

    @model_validator(mode="after")
    def _fold_in_range(self) -> TrainConfig:
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"train.fold = {self.fold} must be below train.folds = {self.folds}")
        return self


class EarlyStopConfig(Section):
    enabled: bool = Field(False, description="stop when the monitor has not improved for `patience` epochs")
    monitor: Literal["val_loss", "val_acc", "train_loss", "train_acc"] = Field(
        "val_loss", description="the metric that picks checkpoints/best.pt and drives early stopping"
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: min for losses, max for accuracies"
    )
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")
    restore_best: bool = Field(True, description="end the run with best.pt's weights (else the last weights)")


class UnfreezeStep(Section):
    epoch: int = Field(gt=0, description="from this epoch on (1-based)...")
    patterns: list[str] = Field(min_length=1, description="...the parameters matching these patterns train")


class TransferConfig(Section):
    """Start from another run's weights (transfer learning) and choose what trains (fine-tuning).

    Patterns are shell-style (`fc*`, `res2`, `head.weight`) and match a parameter's full name or any of its
    enclosing module names (`fc1` matches `fc1.weight` and `fc1.bias`).
    """

    init_from: str | None = Field(
        None, description="a run directory or a checkpoint file to load weights from"
    )
    init_load: list[str] = Field(
        ["*"], min_length=1, description="load only the weights (and norm statistics) matching these patterns"
    )
    strict: bool = Field(False, description="a shape mismatch is an error (else skipped and reported)")
    train_only: list[str] = Field([], description="train only the parameters matching these; freeze the rest")
    freeze: list[str] = Field([], description="freeze the parameters matching these patterns")
    lr_groups: dict[str, float] = Field(
        {}, description="discriminative learning rates {pattern: multiplier of optim.lr}; first match wins"
    )
    unfreeze_every: int | None = Field(
        None,
        gt=0,
        description="gradual unfreezing: every N epochs the next frozen block, from the head back, trains",
    )
    unfreeze: list[UnfreezeStep] = Field(
        [], description="gradual unfreezing by hand: [{epoch, patterns}, ...]"
    )

    @field_validator("lr_groups")
    @classmethod
    def _positive_multipliers(cls, value: dict[str, float]) -> dict[str, float]:
        for pattern, multiplier in value.items():
            if not multiplier > 0:
                raise ValueError(
                    f"multiplier of '{pattern}' must be > 0 (freeze a layer with transfer.freeze)"
                )
        return value


class CheckpointConfig(Section):
    every: int = Field(1, gt=0, description="write checkpoints/last.pt (for --resume) every this many epochs")


class LogConfig(Section):
    runs_dir: str = "runs"
    progress: bool = True
    plots: bool = Field(True, description="curves.png, and gradients.png / activations.png when stats are on")
    tensorboard: bool = Field(
        True, description="TensorBoard events in tb/ (tensorboard --logdir runs): scalars, images, graph"
    )
    histograms: bool = Field(
        True, description="TensorBoard histograms of weights, biases, gradients and activations each epoch"
    )
    stats: bool = Field(
        True,
        description="per-layer statistics in stats.jsonl (gradient norms, update ratios, dead and "
        "saturated units), read by kaizen doctor",
    )
    stats_every: int | None = Field(
        None,
        gt=0,
        description="sample statistics every N training steps (at least once per epoch); null: "
        "N chosen for a few samples per epoch",
    )


class Config(Section):
    """The whole experiment. Defaults are the default job: a CNN on the bundled digits set."""

    name: str | None = Field(None, description="run name; default <dataset>-<preset>")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    init: InitConfig = InitConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    reg: RegConfig = RegConfig()
    train: TrainConfig = TrainConfig()
    early_stop: EarlyStopConfig = EarlyStopConfig()
    transfer: TransferConfig = TransferConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Validate a plain dict; raise KaizenError with one line naming the culprit."""
        if not isinstance(data, dict):
            raise KaizenError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise KaizenError(f"{source}: {_explain(error)}") from None

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a YAML config file."""
        path = Path(path)
        if path.is_dir():
            raise KaizenError(f"config path {path} is a folder; give a YAML file")
        if not path.is_file():
            raise KaizenError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise KaizenError(f"{path} is not a YAML config: it is not text") from None
        except OSError as error:
            raise KaizenError(f"cannot read {path}: {error.strerror or error}") from None
        try:
            loader = _StrictLoader(text)
            loader.name = str(path)  # warnings and errors name the file
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise KaizenError(f"{path}:{where} is not valid YAML") from None
        if data is None:
            warnings.warn(f"{path} is empty: it is the default config", KaizenWarning, stacklevel=2)
            data = {}
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Return the fully resolved config as plain data (JSON/YAML ready)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """Return the fully resolved config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def override(self, assignments: list[str]) -> Config:
        """Return a copy with `dotted.key=value` assignments applied (values parsed as YAML)."""
        data = self.to_dict()
        pending: KaizenError | None = None
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise KaizenError(f"override '{assignment}' is not of the form dotted.key=value")
            value = _parse_value(text)
            try:
                _set_dotted(data, key, value)
            except TypeError:  # a section left a bad shorthand by an earlier assignment: that one is the culprit
                raise pending or KaizenError(f"override '{assignment}': '{key}' is not a section") from None
            _later_model_wins(data, key, value)
            # Re-resolve after each assignment, so a shorthand (augment=kaggle) becomes a section the next
            # assignment (augment.mixup=0.2) can refine. A state that only the next assignment completes
            # (model.preset=null, then model.layers=[...]) is judged at the end.
            try:
                data = Config.from_dict(data, source="override").to_dict()
                pending = None
            except KaizenError as error:
                pending = error
        return Config.from_dict(data, source="override")

    def run_name(self) -> str:
        """The name used for run directories."""
        return self.name or f"{self.data.name}-{self.model.preset or self.model.backbone or 'layers'}"


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, warning when a mapping repeats a key (YAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                continue
            if key in seen:
                line = key_node.start_mark.line + 1
                warnings.warn(
                    f"{key_node.start_mark.name}: line {line}: '{key}' is given twice; the last one counts",
                    KaizenWarning,
                    stacklevel=2,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _later_model_wins(data: dict[str, Any], key: str, value: Any) -> None:
    """A model is a preset or a layer list: giving one with an override drops the other, so switching from a
    preset to `model.layers=[...]` (or back) needs no second override."""
    model = data.get("model")
    if not isinstance(model, dict):
        return
    if key == "model.layers" and value:
        model["preset"] = None
    elif key == "model.preset" and value is not None:
        model["layers"] = None


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {dotted key: value}, e.g. {"optim.lr": 0.01}; an empty section adds nothing."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (sections and leaves)."""
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + name
        keys.append(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            keys.extend(valid_keys(annotation, key + "."))
            keys.extend(key + "." + owned for owned in annotation.owned_keys())
    return keys


def unknown_key(key: str) -> str:
    """The line for a key the schema lacks: a did-you-mean only when a valid key is close (a typo), else that
    this version of kaizen has no such key, with the keys its section does have (a key from a newer version
    should not be pointed at an unrelated one)."""
    from kaizen.version import __version__

    keys = valid_keys()
    *section, leaf = key.split(".")
    prefix = ".".join(section)
    if prefix and prefix not in keys:  # the section itself is unknown: suggest a section
        sections = [name for name in keys if any(other.startswith(name + ".") for other in keys)]
        close = difflib.get_close_matches(section[0], sections, n=1, cutoff=SUGGEST_CUTOFF)
        if close:
            fixed = ".".join([close[0], *section[1:], leaf])
            return f"unknown config key '{key}' (did you mean '{fixed if fixed in keys else close[0]}'?)"
        return f"unknown config key '{key}': kaizen {__version__} has no section '{section[0]}'; sections: " + (
            ", ".join(sections)
        )
    siblings = [name for name in keys if name.rpartition(".")[0] == prefix]
    if prefix and not siblings:
        return f"unknown config key '{key}': '{prefix}' is a value, not a section"
    close = difflib.get_close_matches(leaf, [name.rpartition(".")[2] for name in siblings], 1, SUGGEST_CUTOFF)
    if close:
        return f"unknown config key '{key}' (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
    elsewhere = [name for name in keys if name.rpartition(".")[2] == leaf]
    if elsewhere:
        return f"unknown config key '{key}' (did you mean '{elsewhere[0]}'?)"
    where = f"section '{prefix}'" if prefix else "the top level"
    names = ", ".join(name.rpartition(".")[2] for name in siblings)
    return f"unknown config key '{key}': kaizen {__version__} has no such key; {where} takes: {names}"


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if key not in valid_keys():
        raise KaizenError(unknown_key(key))
    target = data
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value


def _explain(error: ValidationError) -> str:
    """Turn pydantic's report into one line: the dotted key, the value, what is allowed."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden":
        return unknown_key(key)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"'{key}' is required"
    value = first.get("input")
    short_list = isinstance(value, list) and len(repr(value)) <= 40
    shown = "" if (isinstance(value, (dict, list)) and not short_list) or value is None else f" = {value!r}"
    return f"{key}{shown}: {message}"
