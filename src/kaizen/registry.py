"""Name -> builder tables, one per technique family.

Configs speak in names; each family has one table, and adding a technique is one entry. A table knows which
module fills it, so the config schema can list the valid names without importing torch-heavy code itself.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from kaizen.errors import KaizenError


def did_you_mean(word: str, choices: list[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry:
    """A table from a name to a builder for one technique family (activation, norm, preset, ...)."""

    def __init__(self, family: str, filled_by: str):
        self.family = family
        self._filled_by = filled_by
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: add a builder under `name`."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        """Return the valid names, in registration order."""
        importlib.import_module(self._filled_by)
        return list(self._builders)

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


ACTIVATIONS = Registry("activation", "kaizen.nn.layers")
NORMS = Registry("norm", "kaizen.nn.layers")
INITS = Registry("initialisation", "kaizen.nn.init")
PRESETS = Registry("preset", "kaizen.nn.presets")
DATASETS = Registry("dataset", "kaizen.data.datasets")
OPTIMIZERS = Registry("optimiser", "kaizen.training.optim")
SCHEDULES = Registry("schedule", "kaizen.training.schedule")
TASKS = Registry("task", "kaizen.training.multitask")
