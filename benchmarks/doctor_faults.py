"""Generated faults for doctor_accuracy.py: random recipes with one planted fault of random strength, and a race
that scores the doctor's first fix against its other fixes.

A case is drawn by a seeded generator: a data set (digits or mnist-10k), a recipe (an MLP of random depth and
width, simple_cnn or lenet5; an optimiser at a random multiple of its usual rate), and a fault with a random
strength (a deep squashing net with a tiny initialisation, a large initialisation, a negative bias, a rate far
too high or too low, a strong regulariser of one of four kinds, a deep tanh net with a large initialisation at a
modest rate). None of these cases was used to set a threshold: the thresholds come from the hand-made faults
(doctor_accuracy.py's FAULTS) and the healthy runs, so the generated cases are held out.

Each case is scored three ways:
- primary: is the doctor's first warning or critical finding one of the codes the fault may show as?
- cause: does the first fix change the knob the fault planted (where it planted one that a fix can undo)?
- race: the first RACE_FIXES fixes of that finding are each trained from the run's config and seed with only
  that change; is the first fix the one that helps most (best validation accuracy, ties within TIE)?
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from kaizen.registry import OPTIMIZERS

RACE_FIXES = 3
TIE = 0.01  # validation accuracies within 1 point count as a tie for the race
OPTIMISERS = ("adam", "adamw", "rmsprop", "sgd", "momentum", "nesterov")
DATASETS = ("digits", "mnist")
FAULTS = ("vanishing", "exploding", "saturation", "dead", "lr_high", "lr_low", "regularised", "tanh_modest")
# A regulariser and the strengths drawn for it (all well above the usual values the healthy recipes use).
STRENGTHS = {
    "reg.l2": (0.05, 1.0),
    "reg.l1": (0.005, 0.05),
    "optim.weight_decay": (0.2, 2.0),
    "model.dropout": (0.8, 0.9),
}


@dataclass
class Case:
    """One generated case: its overrides (on top of doctor_accuracy.BASE), the codes its primary finding may
    be, and the config keys whose change undoes the planted knob (empty: no single knob to undo)."""

    name: str
    dataset: str
    overrides: list[str]
    expected: tuple[str, ...]
    planted: tuple[str, ...] = ()
    notes: dict = field(default_factory=dict)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _recipe(rng: random.Random, deep: bool = False) -> tuple[list[str], str]:
    """A random healthy recipe: (overrides, optimiser)."""
    optimiser = rng.choice(OPTIMISERS)
    rate = OPTIMIZERS.traits(optimiser).usual_lr * _log_uniform(rng, 0.3, 1.5)
    if deep or rng.random() < 0.7:
        depth = rng.randint(5, 7) if deep else rng.randint(1, 3)
        width = rng.choice((32, 64, 128))
        model = ["model.preset=mlp", "model.hidden=[" + ",".join([str(width)] * depth) + "]"]
    else:
        model = [f"model.preset={rng.choice(('simple_cnn', 'lenet5'))}"]
    return [*model, f"optim.name={optimiser}", f"optim.lr={rate:.3g}"], optimiser


def generate(count: int, seed: int) -> list[Case]:
    """`count` cases, faults in turn (so each kind appears about equally), everything else drawn at random."""
    rng = random.Random(seed)
    return [_case(rng, FAULTS[index % len(FAULTS)]) for index in range(count)]


def _case(rng: random.Random, fault: str) -> Case:
    dataset = rng.choice(DATASETS)
    deep = fault in ("vanishing", "exploding", "tanh_modest")
    recipe, optimiser = _recipe(rng, deep)
    usual = OPTIMIZERS.traits(optimiser).usual_lr
    if fault == "vanishing":
        std = _log_uniform(rng, 0.003, 0.02)
        act = rng.choice(("sigmoid", "tanh"))
        extra = [f"model.activation={act}", "init.weights=normal", f"init.std={std:.3g}"]
        return Case(
            fault, dataset, recipe + extra, ("vanishing_gradients",), ("init.weights", "model.activation")
        )
    if fault == "exploding":
        std = rng.uniform(0.3, 0.8)
        extra = ["init.weights=normal", f"init.std={std:.3g}", f"optim.lr={usual * 0.01:.3g}"]
        return Case(fault, dataset, recipe + extra, ("exploding_gradients",), ("init.weights",))
    if fault == "saturation":
        std = rng.uniform(0.7, 1.5)
        act = rng.choice(("sigmoid", "tanh"))
        extra = ["model.preset=mlp", f"model.activation={act}", "init.weights=normal", f"init.std={std:.3g}"]
        return Case(
            fault, dataset, recipe + extra, ("saturated_units",), ("init.weights", "model.activation")
        )
    if fault == "dead":
        bias = -rng.uniform(1.0, 2.5)
        return Case(fault, dataset, recipe + [f"init.bias={bias:.2f}"], ("dead_units",), ("init.bias",))
    if fault == "lr_high":
        rate = usual * _log_uniform(rng, 100, 1000)
        extra = [f"optim.lr={rate:.3g}"]
        return Case(fault, dataset, recipe + extra, ("lr_too_high", "divergence"), ("optim.lr",))
    if fault == "lr_low":
        rate = usual * _log_uniform(rng, 1e-4, 1e-3)
        codes = ("lr_too_low", "not_learning", "underfitting")  # too slow to move is also not learning
        return Case(fault, dataset, recipe + [f"optim.lr={rate:.3g}"], codes, ("optim.lr",))
    if fault == "regularised":
        key = rng.choice(sorted(STRENGTHS))
        value = _log_uniform(rng, *STRENGTHS[key]) if key != "model.dropout" else rng.uniform(*STRENGTHS[key])
        codes = ("not_learning", "underfitting", "dead_units", "vanishing_gradients")
        return Case(fault, dataset, recipe + [f"{key}={value:.3g}"], codes, (key,), {"regulariser": key})
    # tanh_modest: the deep tanh net with a large initialisation at a rate no higher than usual
    std = rng.uniform(0.3, 0.7)
    extra = [
        "model.activation=tanh",
        "init.weights=normal",
        f"init.std={std:.3g}",
        f"optim.lr={usual * 0.5:.3g}",
    ]
    return Case(fault, dataset, recipe + extra, ("saturated_units", "unstable_loss"), ("init.weights",))


def first_fix_targets(fix: str | None, planted: tuple[str, ...]) -> bool:
    """Whether the override `fix` changes one of the planted knobs (init.std goes with init.weights)."""
    if fix is None:
        return False
    key = fix.partition("=")[0]
    return key in planted or (key == "init.std" and "init.weights" in planted)
