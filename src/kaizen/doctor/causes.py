"""Cause attribution: which knobs of this config, turned away from their usual values, can explain a symptom.

A symptom (a model that does not learn, dead units, saturated units, vanishing gradients, an unstable loss)
can come from several knobs: a strong regulariser of any kind, an unusual initialisation, a rate far from the
optimiser's usual one, the optimiser's own momentum. `suspects(cfg, symptom)` lists the knobs this config set
unusually that can cause `symptom`, most likely first, each with the fix that returns it towards its usual
value and why; `attribute` puts those fixes before a detector's generic remedies (a bigger model, another
activation), so the first fix tried is the one the config itself points at.

"Usual" is measured against the config's defaults and the optimiser registry's `usual_lr`; the strength
cut-offs lie between the healthy recipes of benchmarks/doctor_accuracy.py (no L2 or weight decay, dropout at
most 0.3) with what the doctor itself proposes against overfitting (L2 1e-3 or 1e-4, dropout at most 0.5), and
the generated "regularised" faults (STRENGTHS in benchmarks/doctor_faults.py), which stop learning or learn
little; benchmarks/README.md has the race of their fixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaizen.doctor.recommend as rec
from kaizen.config import Config, InitConfig, OptimConfig
from kaizen.doctor.findings import Threshold
from kaizen.registry import OPTIMIZERS

_SOURCE = "benchmarks/doctor_accuracy.py: generated regularised faults vs healthy recipes"
STRONG_L2 = Threshold("STRONG_L2", 1e-2, _SOURCE)
STRONG_L1 = Threshold("STRONG_L1", 1e-3, _SOURCE)
STRONG_WEIGHT_DECAY = Threshold("STRONG_WEIGHT_DECAY", 5e-2, _SOURCE)
STRONG_SPARSITY = Threshold("STRONG_SPARSITY", 0.1, _SOURCE)
STRONG_DROPOUT = Threshold("STRONG_DROPOUT", 0.6, _SOURCE)
# A rate 10× the optimiser's usual one or more is high enough to throw weights; 10× below, too slow to learn
# in the budgets kaizen's presets use (benchmarks/doctor_accuracy.py: Adam 0.3 and SGD 100 vs SGD 1e-5).
RATE_FACTOR = Threshold("RATE_FACTOR", 10.0, "benchmarks/doctor_accuracy.py: lr faults at ≥ 30× and ≤ 1e-4×")
# Momentum (or Adam's beta1) of 0.99 or more keeps 100 steps of history: a step can overshoot long after the
# gradient turned.
HIGH_MOMENTUM = Threshold("HIGH_MOMENTUM", 0.99, "100 steps of history; the default is 0.9")
WEAKER = 100  # a strong regulariser is suggested 100× weaker

# The symptoms a knob can cause (what a detector passes as `symptom`).
NOT_LEARNING, DEAD, SATURATION, VANISHING, UNSTABLE = (
    "not_learning",
    "dead",
    "saturation",
    "vanishing",
    "unstable",
)
_SHRINKING = {NOT_LEARNING, DEAD, VANISHING}  # what pulling every weight to 0 does
_SIGNAL = {NOT_LEARNING, DEAD, SATURATION, VANISHING, UNSTABLE}


@dataclass(frozen=True)
class Suspect:
    """A config key this run set away from its usual value, the fix, and why it can cause the symptom."""

    key: str
    evidence: str  # "reg.l2=0.5 (strong: 0.01 or more)"
    fix: str  # an override for Config.override
    reason: str


def _regularisers(cfg: Config) -> list[tuple[Suspect, set[str]]]:
    found = []
    for key, value, strong in (
        ("reg.l2", cfg.reg.l2, STRONG_L2),
        ("reg.l1", cfg.reg.l1, STRONG_L1),
        ("optim.weight_decay", cfg.optim.weight_decay, STRONG_WEIGHT_DECAY),
        ("reg.activation_sparsity", cfg.reg.activation_sparsity, STRONG_SPARSITY),
    ):
        if value >= strong:
            found.append(
                (
                    Suspect(
                        key,
                        f"{key}={value:g} (strong: {strong:g} or more)",
                        f"{key}={rec.number(value / WEAKER)}",
                        f"a penalty this strong pulls the weights (or activations) to 0 faster than the data moves "
                        f"them; {WEAKER}× weaker lets the model fit",
                    ),
                    _SHRINKING,
                )
            )
    if cfg.model.dropout >= STRONG_DROPOUT:
        found.append(
            (
                Suspect(
                    "model.dropout",
                    f"model.dropout={cfg.model.dropout:g} (strong: {STRONG_DROPOUT:g} or more)",
                    "model.dropout=0.2",
                    "dropping most units in every step leaves too little signal to fit the training data",
                ),
                {NOT_LEARNING},
            )
        )
    return found


def _initialisation(cfg: Config) -> list[tuple[Suspect, set[str]]]:
    found = []
    matched = rec.matched_init(cfg)
    if cfg.init.weights != InitConfig().weights and matched:
        shown = f"init.weights={cfg.init.weights}" + (
            f", init.std={cfg.init.std:g}" if cfg.init.std != InitConfig().std else ""
        )
        found.append(
            (
                Suspect(
                    "init.weights",
                    f"{shown} (not the scheme matched to {cfg.model.activation})",
                    matched[0],
                    f"the initialisation scales each layer's signal by a factor away from 1, so it grows or "
                    f"shrinks with depth; {matched[0].split('=')[1]} keeps {cfg.model.activation} layers at "
                    "unit scale",
                ),
                _SIGNAL,
            )
        )
    if cfg.init.bias:
        found.append(
            (
                Suspect(
                    "init.bias",
                    f"init.bias={cfg.init.bias:g} (usual: 0)",
                    "init.bias=0.0",
                    "a constant bias shifts every unit's input: negative switches ReLU units off, large "
                    "positive or negative pins sigmoid/tanh at their bounds",
                ),
                {NOT_LEARNING, DEAD, SATURATION, VANISHING},
            )
        )
    return found


def _optimiser(cfg: Config) -> list[tuple[Suspect, set[str]]]:
    found = []
    traits = OPTIMIZERS.traits(cfg.optim.name)
    usual = traits.usual_lr
    if cfg.optim.lr >= RATE_FACTOR * usual:
        found.append(
            (
                Suspect(
                    "optim.lr",
                    f"optim.lr={cfg.optim.lr:g}, {cfg.optim.lr / usual:.0f}× {cfg.optim.name}'s usual {usual:g}",
                    rec.safe_lr(cfg),
                    "steps this large throw the weights far off: units die or saturate and the loss jumps",
                ),
                _SIGNAL,
            )
        )
    elif cfg.optim.lr * RATE_FACTOR <= usual:
        found.append(
            (
                Suspect(
                    "optim.lr",
                    f"optim.lr={cfg.optim.lr:g}, 1/{usual / cfg.optim.lr:.0f} of {cfg.optim.name}'s usual {usual:g}",
                    f"optim.lr={rec.number(usual)}",
                    "steps this small leave the weights near their initial values for the whole budget",
                ),
                {NOT_LEARNING, VANISHING},
            )
        )
    defaults = OptimConfig()
    if traits.family == "sgd":
        key, value, usual_value = "optim.momentum", cfg.optim.momentum, defaults.momentum
        fix = f"optim.momentum={usual_value:g}"
    else:
        key, value, usual_value = "optim.betas", cfg.optim.betas[0], defaults.betas[0]
        fix = f"optim.betas=[{usual_value:g},{cfg.optim.betas[1]:g}]"
    if value >= HIGH_MOMENTUM:
        found.append(
            (
                Suspect(
                    key,
                    f"{key} {value:g} (usual {usual_value:g})",
                    fix,
                    "a momentum this close to 1 keeps stepping in an old direction long after the gradient "
                    "turned: the loss overshoots and swings",
                ),
                {UNSTABLE, NOT_LEARNING},
            )
        )
    return found


def suspects(cfg: Config, symptom: str) -> list[Suspect]:
    """The knobs of `cfg` set away from their usual values that can cause `symptom`, most likely first:
    regularisers, then the initialisation, then the optimiser's rate and momentum."""
    return [
        suspect
        for suspect, causes in (*_regularisers(cfg), *_initialisation(cfg), *_optimiser(cfg))
        if symptom in causes
    ]


@dataclass
class Attribution:
    """A detector's fixes after attribution: suspects' fixes first, then its generic remedies."""

    recommendations: list[str]
    reasons: dict[str, str]
    suspects: list[Suspect]

    @property
    def keys(self) -> list[str]:
        """The suspected config keys, most likely first."""
        return [suspect.key for suspect in self.suspects]

    def evidence(self) -> str:
        """'; suspected: ...' for the evidence line, or '' when the config sets nothing unusual."""
        if not self.suspects:
            return ""
        return "; suspected: " + ", ".join(suspect.evidence for suspect in self.suspects)


def attribute(
    cfg: Config, symptom: str, generic: list[str], reasons: dict[str, str] | None = None, first: int = 0
) -> Attribution:
    """The fixes for `symptom`: `generic[:first]` (remedies a detector is sure of), then the suspects' fixes,
    then the rest of `generic`; each kept once and only if it changes `cfg` (`recommend.distinct`)."""
    found = suspects(cfg, symptom)
    ordered = [*generic[:first], *(suspect.fix for suspect in found), *generic[first:]]
    kept = rec.distinct(cfg, ordered)
    why = dict(reasons or {})
    for suspect in found:
        why.setdefault(suspect.fix, suspect.reason)
    return Attribution(kept, {fix: why[fix] for fix in kept if fix in why}, found)
