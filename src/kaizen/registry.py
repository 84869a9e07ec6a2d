"""Name -> builder tables, one per technique family, each entry carrying the technique's traits.

Configs speak in names; each family has one table, and adding a technique is one entry:
`@ACTIVATIONS.register("relu", family="relu", saturation=None)`. The traits are what the rest of kaizen needs
to know about the technique (an activation's family, an optimiser's family and usual rate, a schedule's shape,
an augmentation's fields and test-time safety); code that needs them asks the table (`traits`, `names_where`)
instead of keeping a list of its own. A table's traits are a frozen dataclass (`ActivationTraits`, ...), so
every entry gives each one (a forgotten one fails at registration) and code reads them as typed attributes
(`OPTIMIZERS.traits("adam").usual_lr`). A table knows which modules fill it, so the config schema can list the
valid names without importing torch-heavy code itself.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from kaizen.errors import KaizenError


def did_you_mean(word: str, choices: list[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class NoTraits:
    """The traits of a family whose entries need none (norms, initialisations, presets, tasks, ensembles)."""


class Registry:
    """A table from a name to a builder and its traits, for one technique family (activation, optimiser, ...).

    `traits` is the family's frozen dataclass: each entry gives every field without a default (their meaning is
    documented on the dataclass).
    """

    def __init__(self, family: str, filled_by: str | tuple[str, ...], traits: type = NoTraits):
        self.family = family
        self.traits_type = traits
        self._filled_by = (filled_by,) if isinstance(filled_by, str) else filled_by
        self._builders: dict[str, Callable[..., Any]] = {}
        self._traits: dict[str, Any] = {}

    @property
    def required(self) -> tuple[str, ...]:
        """The traits every entry must give."""
        return tuple(f.name for f in fields(self.traits_type) if f.default is f.default_factory is MISSING)

    def register(self, name: str, **traits: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: add a builder under `name`, with its traits (every required one; no unknown one)."""
        missing = [trait for trait in self.required if trait not in traits]
        if missing:
            raise TypeError(f"{self.family} '{name}' is registered without {', '.join(missing)}")
        known = {f.name for f in fields(self.traits_type)}
        unknown = sorted(set(traits) - known)
        if unknown:
            raise TypeError(f"{self.family} '{name}' is registered with unknown traits {', '.join(unknown)}")
        typed = self.traits_type(**traits)

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._builders[name] = builder
            self._traits[name] = typed
            return builder

        return add

    def names(self) -> list[str]:
        """Return the valid names, in registration order."""
        for module in self._filled_by:  # the modules whose entries register themselves as they are imported
            importlib.import_module(module)
        return list(self._builders)

    def names_where(self, **traits: Any) -> list[str]:
        """Return the names, in registration order, whose traits have all the given values."""
        return [
            name
            for name in self.names()
            if all(getattr(self._traits[name], key) == value for key, value in traits.items())
        ]

    def traits(self, name: str) -> Any:
        """Return the traits registered with `name` (the family's frozen dataclass)."""
        return self._traits[self.check(name)]

    def check(self, name: str) -> str:
        """Return `name` if it is registered, else raise a KaizenError listing the valid names."""
        valid = self.names()
        if name not in valid:
            raise KaizenError(
                f"unknown {self.family} '{name}'{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
            )
        return name

    def get(self, name: str) -> Callable[..., Any]:
        """Return the builder registered under `name`."""
        return self._builders[self.check(name)]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the thing registered under `name`."""
        return self.get(name)(*args, **kwargs)


@dataclass(frozen=True)
class ActivationTraits:
    """family: 'relu' (a unit passes no gradient where its output is not positive, so it can die), 'squashing'
    (bounded: it saturates) or 'smooth' (neither); saturation: the output bounds beyond which a squashing unit
    is saturated, None for the others."""

    family: str
    saturation: tuple[float, float] | None


@dataclass(frozen=True)
class DatasetTraits:
    """shape: a function of the DataConfig giving (input shape C x H x W, number of classes) without loading
    the pixels, or None when only loading the data tells (arrays in a file); describe and examples: how `kaizen
    data` reports the data set and draws a few examples without loading it all (None: it is loaded)."""

    shape: Callable[..., Any] | None
    describe: Callable[..., Any] | None = None
    examples: Callable[..., Any] | None = None


@dataclass(frozen=True)
class OptimizerTraits:
    """family: 'sgd' (one global step size) or 'adaptive' (per-parameter step sizes); usual_lr: a rate known to
    train from scratch, the most a diverging run is advised to use."""

    family: str
    usual_lr: float


@dataclass(frozen=True)
class ScheduleTraits:
    """decay: the default factor of `schedule.gamma` (None: the shape has no decay factor); on_plateau: the rate
    follows the validation loss; cycles: the shape restarts `schedule.cycles` times (a snapshot at each end)."""

    decay: float | None
    on_plateau: bool
    cycles: bool


@dataclass(frozen=True)
class Param:
    """One setting a technique owns, as its `augment` config field: the default (off, for a switch), what it
    does, and its bounds. The config schema is read from these (kaizen.config.AugmentConfig)."""

    default: bool | float
    description: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class AugmentationTraits:
    """fields: the `augment` settings that switch the op on (any non-zero), each with its Param, and settings:
    those that only tune it; stage: 'warp' (moves the sampling grid; all warps are one resampling), 'pixels'
    (edits the image) or 'mix' (blends the batch with itself and returns two label sets; the last stage);
    test_time: safe to average over at test time (test-time augmentation). The builder applies the op
    (signature by stage: see kaizen.data.augment). An op owns its settings: adding one is its entry alone."""

    fields: dict[str, Param]
    settings: dict[str, Param]
    stage: str
    test_time: bool


ACTIVATIONS = Registry("activation", "kaizen.nn.layers", ActivationTraits)
NORMS = Registry("norm", "kaizen.nn.layers")
INITS = Registry("initialisation", "kaizen.nn.init")
PRESETS = Registry("preset", "kaizen.nn.presets")
DATASETS = Registry(
    "dataset", ("kaizen.data.datasets", "kaizen.data.cifar", "kaizen.data.folder_dataset"), DatasetTraits
)
OPTIMIZERS = Registry("optimiser", "kaizen.training.optim", OptimizerTraits)
SCHEDULES = Registry("schedule", "kaizen.training.schedule", ScheduleTraits)
TASKS = Registry("task", "kaizen.training.multitask")
AUGMENTATIONS = Registry("augmentation", "kaizen.data.augment", AugmentationTraits)
# How an ensemble's members are made from a config and combined (see kaizen.ensemble); the builder trains them.
ENSEMBLES = Registry("ensemble method", "kaizen.ensemble")
