"""Recommendations: concrete `dotted.key=value` overrides drawn from the config schema, given the run's config.

Each function returns overrides for one remedy family (a better initialisation, a lower learning rate, ...)
that change the run's config; `distinct` drops duplicates and no-ops, so a finding never recommends what the
run already does.
"""

from __future__ import annotations

from kaizen.config import Config
from kaizen.errors import KaizenError
from kaizen.registry import ACTIVATIONS, OPTIMIZERS, SCHEDULES
from kaizen.training.optim import calmer_lr

SQUASHING = tuple(ACTIVATIONS.names_where(family="squashing"))
SGD_FAMILY = tuple(OPTIMIZERS.names_where(family="sgd"))
HE_INITS = ("he_normal", "he_uniform")
XAVIER_INITS = ("xavier_normal", "xavier_uniform", "lecun_normal", "orthogonal")
ADAPTIVE = "adam"  # the per-parameter optimiser suggested to a plain-SGD run
PROBE_SHAPE = (1, 28, 28)  # an input shape every preset builds for: used to see which settings a preset reads


def number(value: float) -> str:
    """A short, YAML-readable number: 0.001, 1e-05, 0.3."""
    return f"{value:.3g}"


def distinct(cfg: Config, candidates: list[str]) -> list[str]:
    """Keep the first of each key, and only overrides that apply to `cfg` and change it."""
    kept, keys = [], set()
    current = cfg.to_dict()
    for override in candidates:
        key = override.partition("=")[0]
        if key in keys:
            continue
        try:
            changed = cfg.override([override]).to_dict() != current
        except KaizenError:
            continue  # a remedy that does not fit this config (e.g. a key of a section it lacks)
        if changed:
            kept.append(override)
            keys.add(key)
    return kept


def lower_lr(cfg: Config, factor: float = 10.0) -> str:
    """The learning rate divided by `factor`."""
    return f"optim.lr={number(cfg.optim.lr / factor)}"


def safe_lr(cfg: Config, factor: float = 10.0) -> str:
    """A learning rate `factor` times lower and no higher than the optimiser's usual value (`calmer_lr`)."""
    return f"optim.lr={number(calmer_lr(cfg.optim, factor))}"


def higher_lr(cfg: Config, factor: float = 10.0) -> str:
    """The learning rate multiplied by `factor`."""
    return f"optim.lr={number(cfg.optim.lr * factor)}"


def batch_norm(cfg: Config) -> list[str]:
    """Batch norm, if the model has no normalisation."""
    return ["model.norm=batch"] if cfg.model.norm == "none" else []


def relu(cfg: Config) -> list[str]:
    """ReLU instead of a squashing activation."""
    return ["model.activation=relu"] if cfg.model.activation in SQUASHING else []


def zero_centred(activation: str) -> bool:
    """Whether a squashing activation's outputs straddle 0 (its saturation bounds have opposite signs), or the
    activation does not squash at all."""
    bounds = ACTIVATIONS.traits(activation).saturation
    return bounds is None or bounds[0] < 0 < bounds[1]


def leaky(cfg: Config) -> list[str]:
    """Leaky ReLU instead of an activation of the ReLU family (whose units can die)."""
    return (
        ["model.activation=leaky_relu"]
        if ACTIVATIONS.traits(cfg.model.activation).family == "relu"
        else []
    )


def matched_init(cfg: Config, activation: str | None = None) -> list[str]:
    """The initialisation designed for the activation: He for the ReLU family, Xavier for sigmoid/tanh."""
    activation = activation or cfg.model.activation
    if activation in SQUASHING:
        return [] if cfg.init.weights in XAVIER_INITS else ["init.weights=xavier_normal"]
    return [] if cfg.init.weights in HE_INITS else ["init.weights=he_normal"]


def adaptive_optimizer(cfg: Config) -> list[str]:
    """Adam instead of plain SGD (per-parameter step sizes), where the run's rate suits Adam too."""
    if cfg.optim.name not in SGD_FAMILY or cfg.optim.lr > 10 * OPTIMIZERS.traits(ADAPTIVE).usual_lr:
        return []
    return [f"optim.name={ADAPTIVE}"]


def clipping(cfg: Config) -> list[str]:
    """Clip the global gradient norm at 1."""
    return ["train.clip_norm=1.0"] if cfg.train.clip_norm is None else []


def l2_strength(total_params: int | None) -> float:
    """An L2 weight: 1e-3 for small models, 1e-4 above 100k parameters (the penalty sums over weights)."""
    return 1e-3 if total_params is not None and total_params <= 100_000 else 1e-4


def decaying_schedule(cfg: Config) -> list[str]:
    """A cosine schedule, if the run's schedule keeps the rate flat to the end (read off the schedule itself)."""
    name = cfg.schedule.name
    if SCHEDULES.traits(name).on_plateau:
        return []  # it decays when the validation loss stalls
    epochs = cfg.train.epochs
    end = SCHEDULES.get(name)(float(epochs), cfg.schedule, epochs, 0.0)
    return ["schedule.name=cosine"] if end >= 1.0 else []


def wider(cfg: Config) -> list[str]:
    """Twice the hidden widths, if the model's layers are built from model.hidden (asked of the preset itself)."""
    from kaizen.nn.presets import preset_layers

    if cfg.model.preset is None or not cfg.model.hidden:
        return []
    doubled = [2 * width for width in cfg.model.hidden]
    try:
        before = preset_layers(cfg.model.preset, cfg.model, PROBE_SHAPE)
        after = preset_layers(cfg.model.preset, cfg.model.model_copy(update={"hidden": doubled}), PROBE_SHAPE)
    except KaizenError:
        return []
    return ["model.hidden=[" + ",".join(map(str, doubled)) + "]"] if before != after else []
