"""The doctor's detectors: one finding kind per problem, reading metrics.csv, stats.jsonl and the config of a run.

Each is a `Kind` of scope "run" (`kaizen.doctor.findings`), registered where it is defined, run in the order
defined here (causes before symptoms: a finding's position breaks ties within a severity), and returns a
Finding or None. Every threshold is a `Threshold` naming the measurement behind it: the range seen in healthy
runs (the default job, kaggle_cnn, ReLU, sigmoid and tanh MLPs with matched initialisation, simple_cnn, LeNet,
conv_net, ResNet, SGD with momentum; several seeds), none of which crosses a warning threshold, against the
planted faults of benchmarks/doctor_accuracy.py (benchmarks/README.md has the numbers). Which config knob a
symptom comes from is `kaizen.doctor.causes`' business: a finding's fixes start with the suspects it names.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable

import kaizen.doctor.causes as causes
import kaizen.doctor.recommend as rec
from kaizen.data.augment import active_ops
from kaizen.doctor.findings import Finding, Kind, Threshold, finding_kind
from kaizen.doctor.record import RunRecord
from kaizen.registry import OPTIMIZERS

BENCH = "benchmarks/doctor_accuracy.py"
# --- thresholds ---------------------------------------------------------------------------------------------
# Learning: a train loss at 90% or more of ln(classes) is no better than guessing; a best train loss above 40%
# of it has not fit the training data (ln 10 = 2.30; loss 0.92 is an average probability of 0.4 for the true
# class).
STALLED_FRACTION = Threshold("STALLED_FRACTION", 0.9, f"{BENCH}: not-learning faults stay above 0.9")
UNDERFIT_FRACTION = Threshold(
    "UNDERFIT_FRACTION",
    0.4,
    f"{BENCH}: healthy runs reach 0.14 × ln(classes) or less (0.32 for the 40-20 MLP with dropout 0.3 of "
    "tests/test_doctor.py, its train loss measured with dropout on); underfitting faults stay at 0.46 or more",
)
# Vanishing: init schemes (Xavier, He) and normalisation keep each layer's gradient within about one order of
# magnitude of the output layer's. Two orders below, the first layers learn 100× slower than the head; four
# orders below, they do not learn at all.
VANISHING_RATIO = Threshold(
    "VANISHING_RATIO", 1e-2, f"{BENCH}: healthy weakest-layer median ratio 0.107-1.61; vanishing 4e-11-2e-10"
)
VANISHED_RATIO = Threshold(
    "VANISHED_RATIO", 1e-4, "two orders below VANISHING_RATIO: the layers do not learn"
)
COLLAPSED_STD = Threshold(
    "COLLAPSED_STD", 1e-2, "inputs are standardised (std 1); healthy hidden layers: median std 0.26 or more"
)
# Exploding: the mirror image of vanishing, and a global gradient norm growing 100× during training.
EXPLODING_RATIO = Threshold("EXPLODING_RATIO", 1e2, f"{BENCH}: healthy strongest layer at most 5.5× the head")
GRADIENT_GROWTH = Threshold("GRADIENT_GROWTH", 1e2, f"{BENCH}: healthy global norm grows at most 14×")
SIGNAL_GROWTH = Threshold(
    "SIGNAL_GROWTH", 10.0, f"{BENCH}: last/first hidden output std within a few times on healthy runs"
)
# Instability: a correctly initialised classifier starts at ln(classes) and an epoch's mean loss (every batch
# averaged) falls from there, so a train loss, or a validation loss after the first epoch, above 3 × ln(classes)
# means the steps threw the weights far off.
UNSTABLE_LOSS = Threshold(
    "UNSTABLE_LOSS", 3.0, f"{BENCH}: healthy largest loss 0.28-1.0 × chance; LR far too high 3.6-20.5"
)
CHANCE_ACCURACY_FACTOR = Threshold(
    "CHANCE_ACCURACY_FACTOR", 2.0, "a final train accuracy at most twice a uniform guess's ended at chance"
)
INPUT_SCALE_STD = Threshold(
    "INPUT_SCALE_STD", 10.0, f"{BENCH}: first activation std 0.29-1.62 healthy; unnormalised inputs 28-51"
)
# Dead ReLU units pass no gradient; a layer with half its units dead has lost half its capacity, one with all
# of them dead cuts the network in two.
_DEAD = f"{BENCH}: healthy layers 0-20%, up to 33% in simple_cnn's dense layer; dead-unit faults 100%"
DEAD_INFO, DEAD_WARNING, DEAD_ALL = (
    Threshold("DEAD_INFO", 0.25, _DEAD),
    Threshold("DEAD_WARNING", 0.5, _DEAD),
    Threshold("DEAD_ALL", 0.99, _DEAD),
)
# Saturated sigmoid/tanh outputs pass under 4% (2%) of the peak gradient.
_SATURATED = f"{BENCH}: healthy runs 9% at most; saturation faults 61-88%"
SATURATED_INFO = Threshold("SATURATED_INFO", 0.25, _SATURATED)
SATURATED_WARNING = Threshold("SATURATED_WARNING", 0.5, _SATURATED)
# Learning rate too high: the epoch-mean train loss (an average over every batch, so little noise) climbs at
# least 50% above its best so far, by at least 5% of the first epoch's loss, in several epochs.
SETBACK_RELATIVE, SETBACK_ABSOLUTE, SETBACKS_MIN, SETBACK_SHARE = 0.5, 0.05, 3, 0.15
# Learning rate too low: even the fastest-moving layer changes by under 1e-5 of its norm per step, so a run
# of 10,000 steps moves it by 10% at most.
TINY_UPDATE = Threshold(
    "TINY_UPDATE", 1e-5, f"{BENCH}: healthy peak update ratio 0.0038-0.04 per step; LR too low 1.1e-6-2.4e-6"
)
# Overfitting: a train-validation accuracy gap of 5 points or more that is also 3 standard errors of the
# validation accuracy (so a small validation set's noise is not taken for a gap); or a validation loss 20%
# above its best while the train loss kept falling. When 3 standard errors exceed the 5 points, the validation
# set is too small to show a gap of that size: the fit is "cannot tell", not healthy.
GAP_POINTS = Threshold("GAP_POINTS", 0.05, f"{BENCH}: healthy gaps up to 4.5 points")
GAP_STANDARD_ERRORS = Threshold(
    "GAP_STANDARD_ERRORS", 3.0, "3 binomial standard errors: about 1 in 700 by chance"
)
VAL_LOSS_RISE = Threshold("VAL_LOSS_RISE", 0.2, f"{BENCH}: overfitting faults rise far more")
LABEL_GAP_POINTS = Threshold(
    "LABEL_GAP_POINTS", 0.10, f"{BENCH}: test - best validation -0.015-0.020 healthy; label noise 0.26-0.34"
)
MAX_VAL_SPLIT = 0.5  # the most of the training data a "cannot tell" finding suggests holding out
ASSUMED_VAL_SIZE = 100  # when summary.json does not say (a run in progress): errs towards fewer alarms
LAST_EPOCHS = 3  # the end state of a run is the mean of its last few epochs


def _end(values: list[float | None]) -> float:
    """The end state of a metric: the mean of the last epochs, but never of the first third of a short run."""
    tail = [value for value in values[-max(1, min(LAST_EPOCHS, len(values) // 3)) :] if value is not None]
    return sum(tail) / len(tail) if tail else math.nan


def _g(value: float) -> str:
    return f"{value:.2g}"


def _underfits(run: RunRecord) -> bool:
    """Whether the best train loss is still above half of ln(classes): the model has not fitted its data."""
    finite = [loss for loss in run.train_losses() if math.isfinite(loss)]
    chance = run.chance_loss
    return bool(finite) and chance is not None and min(finite) >= UNDERFIT_FRACTION * chance


def _learning_state(run: RunRecord) -> tuple[bool, str]:
    """(not learning, a phrase with the numbers): is the best train loss still near chance?"""
    losses, chance = run.train_losses(), run.chance_loss
    if not losses or chance is None:
        return False, ""
    best = min(losses)
    stalled = best >= STALLED_FRACTION * chance
    return stalled, f"best train loss {best:.3g} vs {chance:.3g} for a uniform guess"


# --- optimisation: gradients, units, learning rate --------------------------------------------------------


def _blow_ups(run: RunRecord, chance: float) -> list[dict]:
    """Metric rows (train, and validation after the first epoch) whose loss is far above chance."""
    rows = [row for row in run.train if math.isfinite(row["loss"]) and row["loss"] > UNSTABLE_LOSS * chance]
    first = run.val[0]["epoch"] if run.val else None
    rows += [
        row
        for row in run.val
        if row["epoch"] != first and math.isfinite(row["loss"]) and row["loss"] > UNSTABLE_LOSS * chance
    ]
    return rows


def _gradient_ratios(run: RunRecord, pick: Callable[[list[float]], float]) -> dict[int, tuple[float, str]]:
    """{epoch: (pick(other layers' gradient norms) / output layer's, the picked layer)} where defined."""
    ratios = {}
    for epoch, layers in run.by_epoch("layer").items():
        norms = [(record.get("grad_norm"), record["layer"]) for record in layers]
        if len(norms) < 2 or any(norm is None for norm, _ in norms):
            continue
        # The output layer: the classifier `head` (extra task heads come after it), else the last layer.
        head = next((index for index, (_, name) in enumerate(norms) if name == "head"), len(norms) - 1)
        head_norm = norms[head][0]
        if head_norm <= 0:
            continue
        value, layer = pick(norms[:head] + norms[head + 1 :])
        ratios[epoch] = (value / head_norm, layer)
    return ratios


def _geometric_median(values: list[float]) -> float:
    return math.exp(statistics.median(math.log(max(value, 1e-300)) for value in values))


def _signal_growth(run: RunRecord) -> tuple[float, float, str, str] | None:
    """(median over epochs of the last activation layer's output std / the first's, the same in the first
    epoch, the first layer, the last layer), or None without activation statistics."""
    ratios, names = [], ("", "")
    for records in run.by_epoch("activation").values():
        stds = [(record.get("std"), record["layer"]) for record in records]
        if len(stds) < 2 or any(std is None for std, _ in stds) or stds[0][0] <= 0:
            continue
        ratios.append(stds[-1][0] / stds[0][0])
        names = (stds[0][1], stds[-1][1])
    return (_geometric_median(ratios), ratios[0], *names) if ratios else None


def _setbacks(run: RunRecord) -> list[tuple[int, float, float]]:
    """(epoch, loss, best before) of each epoch whose train loss rose SETBACK_RELATIVE above its best so far
    (and by SETBACK_ABSOLUTE of the first epoch's loss)."""
    losses = run.train_losses()
    setbacks, best = [], losses[0]
    for row, loss in zip(run.train[1:], losses[1:]):
        if loss > (1 + SETBACK_RELATIVE) * best and loss - best > SETBACK_ABSOLUTE * losses[0]:
            setbacks.append((row["epoch"], loss, best))
        best = min(best, loss)
    return setbacks


def _update_sizes(run: RunRecord, details: dict) -> list[str]:
    """The median per-step update/weight ratio as an evidence phrase (and into `details`), if recorded."""
    ratios = [record.get("update_ratio") for record in run.stats if record["kind"] == "layer"]
    ratios = [ratio for ratio in ratios if ratio]
    if not ratios:
        return []
    details["median_update_ratio"] = statistics.median(ratios)
    return [f"median update/weight ratio {statistics.median(ratios):.2g} per step"]


def _usual_rate(cfg) -> float:
    """The optimiser's usual learning rate (its registry entry's `usual_lr`)."""
    return OPTIMIZERS.traits(cfg.optim.name).usual_lr


def _collapsed(run: RunRecord) -> dict[str, float]:
    """{layer: median output std} of the activation layers whose outputs barely vary (dead ones aside: they
    have their own finding)."""
    collapsed = {}
    for layer, records in run.by_layer("activation").items():
        stds = [record["std"] for record in records if record.get("std") is not None]
        dead = _end([record.get("dead") for record in records])
        if stds and statistics.median(stds) < COLLAPSED_STD and not dead >= DEAD_WARNING:
            collapsed[layer] = statistics.median(stds)
    return collapsed


def _generalisation_remedies(run: RunRecord) -> list[str]:
    """What narrows a train-validation gap, in order: augmentation, L2, dropout, early stopping, more data."""
    cfg = run.config
    total_params = run.summary.get("params", {}).get("total")
    candidates = []
    if _augmentation_off(cfg):
        candidates.append("augment=kaggle")
    if cfg.reg.l2 == 0:
        candidates.append(f"reg.l2={rec.number(rec.l2_strength(total_params))}")
    if cfg.model.dropout < 0.5:
        candidates.append(f"model.dropout={min(0.5, round(cfg.model.dropout + 0.3, 1)):g}")
    if not cfg.early_stop.enabled:
        candidates.append("early_stop.enabled=true")
    if cfg.data.fraction < 1:
        candidates.append("data.fraction=1.0")
    return candidates


def _augmentation_off(cfg) -> bool:
    return not active_ops(cfg.augment)


def _fixes(attribution: causes.Attribution) -> dict:
    """A Finding's recommendations, reasons and suspects from a cause attribution."""
    return {
        "recommendations": attribution.recommendations,
        "reasons": attribution.reasons,
        "suspects": attribution.keys,
    }


def _span(epochs: list[int]) -> str:
    """'3, 5, 8', or '3, 5, 8, …, 20 (9 epochs)' for long lists."""
    if len(epochs) <= 5:
        return ", ".join(map(str, epochs))
    return f"{', '.join(map(str, epochs[:3]))}, …, {epochs[-1]} ({len(epochs)} epochs)"


@finding_kind
class Divergence(Kind):
    """The loss became NaN or infinite: the run stopped, or went on with destroyed weights."""

    scope = "run"
    code = "divergence"
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        error = run.meta.get("error") or ""
        failed = run.status == "failed" and "diverged" in error
        nonfinite = [row["epoch"] for row in run.train + run.val if not math.isfinite(row["loss"])]
        if not (failed or nonfinite):
            return None
        parts, details = [], {}
        if failed:
            where = re.search(r"epoch (\d+), step (\d+)", error)
            if where:
                details.update(epoch=int(where[1]), step=int(where[2]))
                parts.append(
                    f"the loss became {error.split('loss is ')[-1].split(';')[0]} at epoch {where[1]}, step {where[2]}"
                )
            else:
                parts.append("the run stopped: loss not finite")
        if nonfinite:
            details["nonfinite_epochs"] = sorted(set(nonfinite))
            parts.append(f"loss not finite in epoch(s) {_span(sorted(set(nonfinite)))}")
        finite = [loss for loss in run.train_losses() if math.isfinite(loss)]
        if finite:
            parts.append(
                f"last finite train loss {finite[-1]:.3g} (chance {run.chance_loss or math.log(10):.3g})"
            )
        norms = [record.get("grad_norm_max") for record in run.stats if record["kind"] == "model"]
        finite_norms = [norm for norm in norms if norm is not None and math.isfinite(norm)]
        if finite_norms:
            details["max_grad_norm"] = max(finite_norms)
            parts.append(f"largest sampled gradient norm {max(finite_norms):.3g}")
        cfg = run.config
        fixes = causes.attribute(
            cfg,
            causes.UNSTABLE,
            [rec.safe_lr(cfg), *rec.clipping(cfg), *rec.batch_norm(cfg), "schedule.warmup_epochs=1"],
        )
        usual = _usual_rate(cfg)
        blamed = "learning rate too high"
        if cfg.optim.lr <= usual:  # the rate is not why: say what is suspected instead
            parts.append(f"the rate {cfg.optim.lr:g} is no higher than {cfg.optim.name}'s usual {usual:g}")
            blamed = "suspected: " + ", ".join(fixes.keys) if fixes.suspects else "at a usual rate"
        return Finding(
            severity="critical",
            code="divergence",
            title=f"Training diverged (the loss became NaN/Inf): {blamed}",
            evidence="; ".join(parts) + fixes.evidence(),
            explanation=(
                f"The optimiser's steps (learning rate {cfg.optim.lr:g} with {cfg.optim.name}) were so large that the "
                "weights jumped out of the region where the loss is meaningful; once the loss is NaN, training cannot "
                "recover. A learning rate at least 10× lower keeps the steps bounded; clipping the gradient norm and "
                "batch norm make the steps safer still. At a usual rate, a large initialisation or a momentum near "
                "1 makes the steps too large instead."
            ),
            details=details,
            **_fixes(fixes),
        )


@finding_kind
class UnnormalisedInputs(Kind):
    """Normalisation is off and the first epoch's loss starts far above chance: the inputs' scale is wrong."""

    scope = "run"
    code = "unnormalised_inputs"
    thresholds = (INPUT_SCALE_STD, UNSTABLE_LOSS)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        cfg = run.config
        chance = run.chance_loss or math.log(10)
        if cfg.data.normalize or not run.train or not math.isfinite(run.train[0]["loss"]):
            return None
        first = run.train[0]["loss"]
        first_act = next(iter(run.by_layer("activation").values()), [{}])[0]
        act_std = first_act.get("std")
        loud = act_std is not None and act_std > INPUT_SCALE_STD
        if first <= UNSTABLE_LOSS * chance and not loud:
            return None
        parts = [
            f"data.normalize is false; epoch 1's train loss is {first:.3g} ({first / chance:.1f}× chance {chance:.3g})"
        ]
        details = {"first_loss": first}
        if act_std is not None:
            details["first_activation_std"] = act_std
            parts.append(
                f"{first_act['layer']}'s outputs have std {act_std:.3g} in epoch 1 (standardised inputs: below "
                f"{INPUT_SCALE_STD:g})"
            )
        return Finding(
            severity="critical",
            code="unnormalised_inputs",
            title="Inputs not normalised: the loss starts far above ln(classes)",
            evidence="; ".join(parts),
            explanation=(
                "Initialisation schemes assume inputs of mean 0 and std 1; inputs on a scale of tens or hundreds make the "
                "first layer's outputs and the logits as large, so the first predictions are confidently wrong and the "
                "first steps are huge. Standardising the inputs with the training split's mean and std (the default) "
                "puts the loss at initialisation near ln(classes)."
            ),
            recommendations=rec.distinct(cfg, ["data.normalize=true", *rec.batch_norm(cfg)]),
            details=details,
        )


@finding_kind
class VanishingGradients(Kind):
    """Gradients fading towards the input (backward), or hidden outputs that no longer vary (forward)."""

    scope = "run"
    code = "vanishing_gradients"
    thresholds = (VANISHING_RATIO, VANISHED_RATIO, COLLAPSED_STD, DEAD_WARNING, UNDERFIT_FRACTION)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        ratios = _gradient_ratios(run, min)
        median_ratio = _geometric_median([ratio for ratio, _ in ratios.values()]) if ratios else None
        backward = median_ratio is not None and median_ratio < VANISHING_RATIO
        early = [epoch for epoch, (ratio, _) in ratios.items() if ratio < VANISHING_RATIO]
        collapsed = _collapsed(run)
        if not (backward or collapsed or early):
            return None
        stalled, learning = _learning_state(run)
        parts, details = [], {"not_learning": stalled}
        if ratios and (backward or not collapsed):
            first_epoch, last_epoch = min(ratios), max(ratios)
            first, first_layer = ratios[first_epoch]
            last, last_layer = ratios[last_epoch]
            details.update(
                ratio_by_epoch={epoch: ratio for epoch, (ratio, _) in ratios.items()},
                median_ratio=median_ratio,
                weakest_layer=last_layer,
            )
            parts.append(
                f"{first_layer}'s gradient norm is {_g(first)} of the output layer's at epoch {first_epoch}"
                + (f", {last_layer}'s {_g(last)} at epoch {last_epoch}" if last_epoch != first_epoch else "")
                + f" (median over {len(ratios)} epochs {_g(median_ratio)}; healthy: above {VANISHING_RATIO:g})"
            )
        if collapsed:
            details["collapsed_layers"] = collapsed
            parts.append(
                "outputs that barely vary: "
                + ", ".join(f"{layer} std {_g(std)}" for layer, std in collapsed.items())
                + f" (healthy: above {COLLAPSED_STD:g})"
            )
        if learning:
            parts.append(learning)
        if backward or collapsed:
            severity = (
                "critical"
                if stalled or (median_ratio is not None and median_ratio < VANISHED_RATIO)
                else "warning"
            )
            title = "Vanishing gradients" if backward else "Vanishing signal: hidden outputs collapse"
        else:
            # Recovered, but if the model still has not fitted its training data the lost epochs are why.
            severity = "warning" if _underfits(run) else "info"
            title = "Gradients vanished early in training" + (
                ": the run never caught up" if severity == "warning" else ", then recovered"
            )
            details["epochs"] = early
            parts.insert(0, f"ratio below {VANISHING_RATIO:g} in epochs {_span(early)}")
        why, fixes = self.remedies(run)
        return Finding(
            severity=severity,
            code="vanishing_gradients",
            title=title,
            evidence="; ".join(parts) + fixes.evidence(),
            explanation=why,
            details=details,
            **_fixes(fixes),
        )

    def remedies(self, run: RunRecord) -> tuple[str, causes.Attribution]:
        """(why the gradients vanish with this activation and initialisation, the fixes in order)."""
        cfg = run.config
        activation = cfg.model.activation
        init = cfg.init.weights
        if activation in rec.SQUASHING:
            why = (
                f"Each {activation} layer multiplies the backward signal by its derivative (at most 1, far less "
                f"away from 0) and by its weights ({init} initialisation); over "
                f"{len(run.by_layer('layer'))} layers the product shrinks geometrically, so the layers near the input "
                "barely learn (seeds 001 and 003). Batch norm rescales every layer's input and restores the signal "
                "whatever the initialisation; ReLU passes gradients with derivative 1 and needs He initialisation to "
                "go with it (--set model.activation=relu --set init.weights=he_normal)."
            )
            candidates = [
                *rec.batch_norm(cfg),
                *rec.relu(cfg),
                *rec.matched_init(cfg, "relu"),
                *rec.matched_init(cfg),
            ]
        else:
            why = (
                f"With {init} initialisation each layer scales its input and its gradient by a factor below one, so "
                "signal and gradient shrink geometrically with depth. He initialisation keeps the variance of both "
                "constant through ReLU layers; batch norm rescales every layer whatever the initialisation."
            )
            candidates = [*rec.matched_init(cfg), *rec.batch_norm(cfg)]
        # An activation whose outputs are all positive (sigmoid) shifts every layer's input off centre, which no
        # initialisation undoes, so batch norm stays first there; for a zero-centred one (tanh) the suspects come
        # first. Measured: on the deep sigmoid MLP of tests/test_doctor.py Xavier alone lifts validation accuracy
        # 5 points, batch norm 30 or more; on the generated deep tanh nets of benchmarks/doctor_accuracy.py
        # (--generated, seed 1) Xavier beat batch norm (97.2% vs 92.4%, 82.5% vs 72.4%).
        fixes = causes.attribute(
            cfg,
            causes.VANISHING,
            [*candidates, *rec.adaptive_optimizer(cfg)],
            first=0 if rec.zero_centred(activation) else len(rec.batch_norm(cfg)),
        )
        return why, fixes


@finding_kind
class LearningRateTooHigh(Kind):
    """The loss blows up far above chance, climbs back from its best, or keeps jumping: steps overshoot.

    This is the learning-rate problem short of NaN (that is `divergence`): epoch-mean losses are averages over
    every batch, so a well-set rate gives a curve that falls smoothly from about ln(classes).
    """

    scope = "run"
    code = "lr_too_high"
    thresholds = (UNSTABLE_LOSS, CHANCE_ACCURACY_FACTOR)
    explains_fit = True
    at_usual_rate = False  # this kind names the rate: it speaks only of rates above the optimiser's usual one

    def run(self, run: RunRecord) -> Finding | None:
        if (run.config.optim.lr <= _usual_rate(run.config)) != self.at_usual_rate:
            return None  # the other kind's
        chance = run.chance_loss or math.log(10)
        losses = run.train_losses()
        finite = [loss for loss in losses if math.isfinite(loss)]
        if len(finite) < len(losses) or not finite:
            return None  # NaN: divergence names it
        blow_ups = _blow_ups(run, chance)
        climbing = len(finite) >= 3 and finite[-1] > max(2 * min(finite), chance)
        setbacks = _setbacks(run)
        oscillating = len(losses) >= 4 and len(setbacks) >= max(
            SETBACKS_MIN, SETBACK_SHARE * (len(losses) - 1)
        )
        if not (blow_ups or climbing or oscillating):
            return None
        parts: list[str] = []
        details: dict = {}
        if blow_ups:
            worst = max(blow_ups, key=lambda row: row["loss"])
            details.update(peak_loss=worst["loss"], peak_epoch=worst["epoch"], peak_split=worst["split"])
            parts.append(
                f"{worst['split']} loss reached {worst['loss']:.3g} in epoch {worst['epoch']}, "
                f"{worst['loss'] / chance:.0f}× chance ({chance:.3g}; healthy: below {UNSTABLE_LOSS:g}×)"
            )
        if climbing:
            details.update(best_loss=min(finite), final_loss=finite[-1])
            parts.append(f"train loss climbed from its best {min(finite):.3g} to {finite[-1]:.3g}")
        if oscillating:
            epochs = [epoch for epoch, _, _ in setbacks]
            worst_epoch, worst_loss, before = max(setbacks, key=lambda item: item[1] / item[2])
            details["setback_epochs"] = epochs
            parts.append(
                f"train loss rose 50%+ above its best in {len(setbacks)} of {len(losses) - 1} epochs: {_span(epochs)}; "
                f"worst: {worst_loss:.3g} at epoch {worst_epoch} after a best of {before:.3g}"
            )
        parts += _update_sizes(run, details)
        classes = run.num_classes or 10
        final_acc = run.train[-1]["acc"]
        ended_at_chance = final_acc <= CHANCE_ACCURACY_FACTOR / classes
        details["ended_at_chance"] = ended_at_chance
        if ended_at_chance:
            parts.append(f"it ends at train accuracy {final_acc:.1%}, about a guess's {1 / classes:.0%}")
        cfg = run.config
        candidates = [rec.safe_lr(cfg) if blow_ups or ended_at_chance else rec.lower_lr(cfg)]
        candidates += [*rec.decaying_schedule(cfg), *rec.clipping(cfg), *rec.batch_norm(cfg)]
        # At a rate no higher than the optimiser's usual one, the rate is not the first suspect: knobs this
        # config set unusually (initialisation, momentum, bias) come first when there are any.
        usual = _usual_rate(cfg)
        modest = cfg.optim.lr <= usual
        fixes = causes.attribute(cfg, causes.UNSTABLE, candidates, first=0 if modest else 1)
        title = "Learning rate too high (the loss blows up or oscillates)"
        if modest:
            parts.append(f"the rate {cfg.optim.lr:g} is no higher than {cfg.optim.name}'s usual {usual:g}")
            title = "Unstable loss (blows up or oscillates) at a usual rate"
        return Finding(
            severity="critical" if ended_at_chance or climbing else "warning",
            code=self.code,
            title=title,
            evidence="; ".join(parts) + fixes.evidence(),
            explanation=(
                f"An epoch's mean loss averages every batch, so it falls smoothly from about ln(classes) when the step "
                f"size suits the loss surface. A loss far above chance, or one that keeps climbing back, means the "
                f"steps (learning rate {cfg.optim.lr:g} with {cfg.optim.name}) overshoot the minimum and throw the "
                "weights around, even when no NaN appears. A 10× lower rate (no higher than the optimiser's usual "
                "one), a decaying schedule and gradient clipping keep the steps bounded; when the rate is usual, "
                "the knobs that make each step larger than it should be (a large initialisation, a momentum "
                "near 1) are the suspects."
            ),
            details=details,
            **_fixes(fixes),
        )


@finding_kind
class UnstableLoss(LearningRateTooHigh):
    """The same unstable loss at a rate no higher than the optimiser's usual one: the rate is not the first
    suspect, so the finding does not name it. The knobs the config set unusually (a large initialisation, a
    momentum near 1) come first; a lower rate, a decaying schedule and clipping follow. Before, this was reported
    as lr_too_high beside evidence saying the rate was usual (an exploding initialisation at 1% of the usual
    rate read "lr_too_high" with He initialisation as its first fix)."""

    code = "unstable_loss"
    at_usual_rate = True


@finding_kind
class ExplodingGradients(Kind):
    """Gradients growing towards the input, or the global gradient norm growing 100× during training."""

    scope = "run"
    code = "exploding_gradients"
    thresholds = (EXPLODING_RATIO, GRADIENT_GROWTH, SIGNAL_GROWTH, UNSTABLE_LOSS)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        ratios = _gradient_ratios(run, max)
        median_ratio = _geometric_median([ratio for ratio, _ in ratios.values()]) if ratios else None
        by_depth = median_ratio is not None and median_ratio > EXPLODING_RATIO
        norms = [
            (record["epoch"], record.get("grad_norm")) for record in run.stats if record["kind"] == "model"
        ]
        norms = [(epoch, norm) for epoch, norm in norms if norm is not None and norm > 0]
        growth = max(norm for _, norm in norms) / norms[0][1] if norms else 1.0
        in_time = growth > GRADIENT_GROWTH
        growth_by_depth = _signal_growth(run)
        forward = growth_by_depth is not None and growth_by_depth[0] > SIGNAL_GROWTH
        if not (by_depth or in_time or forward):
            return None
        parts, details = [], {}
        chance = run.chance_loss or math.log(10)
        blown_from_start = False
        if forward:
            ratio, at_start, first, last = growth_by_depth
            details.update(signal_growth=ratio, signal_growth_epoch1=at_start)
            parts.append(
                f"hidden outputs grow with depth: {last}'s std is {_g(ratio)}× {first}'s "
                f"(median over epochs, {_g(at_start)}× in epoch 1; healthy: below {SIGNAL_GROWTH:g}×)"
            )
            # Amplified from the start by an initialisation that is not the one matched to the activation (the
            # matched schemes keep the variance), with a first loss far above chance: the blow-up is the init's
            # doing, not the learning rate's (which would have to grow the weights first).
            first_loss = run.train[0]["loss"] if run.train else math.nan
            init_suspected = "init.weights" in [s.key for s in causes.suspects(run.config, causes.UNSTABLE)]
            blown_from_start = (
                at_start > SIGNAL_GROWTH and init_suspected and not first_loss <= UNSTABLE_LOSS * chance
            )
            if blown_from_start:
                parts.append(f"epoch 1's train loss {first_loss:.3g} ({chance:.3g} at chance)")
        if by_depth:
            layer = ratios[max(ratios)][1]
            details.update(median_ratio=median_ratio, layer=layer)
            parts.append(
                f"{layer}'s gradient norm is {_g(median_ratio)}× the output layer's (median over epochs)"
            )
        if in_time:
            peak_epoch, peak = max(norms, key=lambda item: item[1])
            details.update(growth=growth, peak_epoch=peak_epoch, peak_norm=peak)
            parts.append(
                f"global gradient norm grew {_g(growth)}× from epoch {norms[0][0]} to {peak:.3g} at epoch {peak_epoch}"
            )
        cfg = run.config
        generic = (
            [*rec.matched_init(cfg), *rec.batch_norm(cfg), *rec.clipping(cfg), rec.lower_lr(cfg)]
            if forward
            else [*rec.clipping(cfg), rec.lower_lr(cfg), *rec.batch_norm(cfg), *rec.matched_init(cfg)]
        )
        fixes = causes.attribute(cfg, causes.UNSTABLE, generic)
        return Finding(
            severity="critical" if blown_from_start else "warning",
            code="exploding_gradients",
            title="Exploding gradients",
            evidence="; ".join(parts) + fixes.evidence(),
            explanation=(
                "Gradients that grow layer by layer or epoch by epoch make steps of wildly different sizes: the "
                "largest ones throw the weights far off and precede divergence. Clipping the gradient norm bounds "
                "every step; a lower learning rate and batch norm remove the cause."
            ),
            details=details,
            **_fixes(fixes),
        )


@finding_kind
class LearningRateTooLow(Kind):
    """Every layer's weights barely move per step although gradients flow: the run crawls."""

    scope = "run"
    code = "lr_too_low"
    thresholds = (TINY_UPDATE,)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        peaks = {}
        for epoch, layers in run.by_epoch("layer").items():
            moving = [
                r["update_ratio"]
                for r in layers
                if (r.get("grad_norm") or 0) > 0 and r.get("update_ratio") is not None
            ]
            if moving:
                peaks[epoch] = max(moving)
        losses = run.train_losses()
        if not peaks or len(losses) < 2 or max(peaks.values()) >= TINY_UPDATE:
            return None
        if not losses[-1] > 0.5 * losses[0]:  # it learned well anyway
            return None
        cfg = run.config
        peak_epoch = max(peaks, key=peaks.get)
        fixes = causes.attribute(cfg, causes.NOT_LEARNING, [rec.higher_lr(cfg), *rec.adaptive_optimizer(cfg)])
        return Finding(
            severity="warning",
            code="lr_too_low",
            title="Learning rate too low (tiny updates)",
            evidence=(
                f"the fastest-moving layer changes by at most {_g(peaks[peak_epoch])} of its norm per step "
                f"(epoch {peak_epoch}; healthy: 1e-3 to 1e-2); train loss {losses[0]:.3g} -> {losses[-1]:.3g} "
                f"over {len(losses)} epochs"
            ),
            explanation=(
                f"With learning rate {cfg.optim.lr:g} each step moves the weights by a negligible fraction, so even "
                "thousands of steps leave them near their initial values. A 10× higher rate, or Adam's per-parameter "
                "steps, makes progress in the same budget."
            ),
            details={"peak_update_ratio": peaks[peak_epoch], "peak_epoch": peak_epoch},
            **_fixes(fixes),
        )


@finding_kind
class DeadUnits(Kind):
    """ReLU-family units that output nothing for every sampled example: they no longer learn."""

    scope = "run"
    code = "dead_units"
    thresholds = (DEAD_INFO, DEAD_WARNING, DEAD_ALL)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        dead = {}
        for layer, records in run.by_layer("activation").items():
            fraction = _end([record.get("dead") for record in records])
            if math.isfinite(fraction) and fraction >= DEAD_INFO:
                dead[layer] = fraction
        if not dead:
            return None
        worst = max(dead.values())
        severity = "critical" if worst >= DEAD_ALL else "warning" if worst >= DEAD_WARNING else "info"
        cfg = run.config
        candidates = [*rec.leaky(cfg), *rec.batch_norm(cfg), rec.safe_lr(cfg, 3), *rec.matched_init(cfg)]
        fixes = causes.attribute(cfg, causes.DEAD, candidates)
        layers = ", ".join(f"{layer} {fraction:.0%}" for layer, fraction in dead.items())
        whole = [layer for layer, fraction in dead.items() if fraction >= DEAD_ALL]
        return Finding(
            severity=severity,
            code="dead_units",
            title="Dead ReLU units",
            evidence=(
                f"units inactive for every sampled example (mean of the last epochs): {layers}"
                + (f"; {', '.join(whole)} passes no signal at all" if whole else "")
                + fixes.evidence()
            ),
            explanation=(
                "A ReLU unit whose input is negative for every example outputs zero and gets zero gradient, so it "
                "never recovers (the 'dying ReLU' of seed 000); large steps, negative biases and penalties that "
                "pull the weights to 0 push units there. Leaky ReLU keeps a small gradient on the negative side; "
                "batch norm re-centres the inputs; a lower learning rate avoids the jumps that kill units."
            ),
            details={"dead": dead},
            **_fixes(fixes),
        )


@finding_kind
class SaturatedUnits(Kind):
    """Sigmoid/tanh outputs pinned near their bounds, where the derivative (and the gradient) is almost 0."""

    scope = "run"
    code = "saturated_units"
    thresholds = (SATURATED_INFO, SATURATED_WARNING)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        saturated = {}
        for layer, records in run.by_layer("activation").items():
            fraction = _end([record.get("saturated") for record in records])
            if math.isfinite(fraction) and fraction >= SATURATED_INFO:
                saturated[layer] = fraction
        if not saturated:
            return None
        cfg = run.config
        candidates = [*rec.batch_norm(cfg), *rec.relu(cfg), *rec.matched_init(cfg)]
        fixes = causes.attribute(cfg, causes.SATURATION, candidates)
        return Finding(
            severity="warning" if max(saturated.values()) >= SATURATED_WARNING else "info",
            code="saturated_units",
            title="Saturated sigmoid/tanh units",
            evidence="outputs near the bounds (mean of the last epochs): "
            + ", ".join(f"{layer} {fraction:.0%}" for layer, fraction in saturated.items())
            + fixes.evidence(),
            explanation=(
                "Where sigmoid or tanh is flat, its derivative is a few percent of its peak, so saturated units "
                "pass almost no gradient back (Glorot and Bengio 2010). Their inputs are too large: Xavier "
                "initialisation or batch norm keeps them in the steep middle; ReLU does not saturate for positive inputs."
            ),
            details={"saturated": saturated},
            **_fixes(fixes),
        )


@finding_kind
class LabelNoise(Kind):
    """Validation accuracy far below test accuracy: the training file's labels disagree with the test file's.

    The validation split is cut from the training file, so it carries that file's label errors; a test set
    labelled separately does not. On the same model, the two accuracies differ only by sampling noise.
    """

    scope = "run"
    code = "label_noise"
    thresholds = (LABEL_GAP_POINTS, GAP_STANDARD_ERRORS)
    explains_fit = True

    def run(self, run: RunRecord) -> Finding | None:
        test = run.summary.get("test", {})
        test_acc, n_test = test.get("acc"), test.get("n") or run.summary.get("data", {}).get("test")
        if test_acc is None or not n_test or not run.val or run.config.data.test_path is None:
            return None
        val_acc = max(row["acc"] for row in run.val)
        n_val = run.summary.get("data", {}).get("val") or ASSUMED_VAL_SIZE
        error = math.sqrt(val_acc * (1 - val_acc) / n_val + test_acc * (1 - test_acc) / n_test)
        gap = test_acc - val_acc
        if gap < LABEL_GAP_POINTS or gap < GAP_STANDARD_ERRORS * max(error, 1e-3):
            return None
        cfg = run.config
        return Finding(
            severity="warning",
            code="label_noise",
            title="Noisy training labels: validation accuracy far below test accuracy",
            evidence=(
                f"best validation accuracy {val_acc:.1%} ({n_val} images from the training file) vs test accuracy "
                f"{test_acc:.1%} ({n_test} images from {cfg.data.test_path}): {100 * gap:.1f} points "
                f"(± {100 * error:.1f} standard error)"
            ),
            explanation=(
                "The model scores better on the separately labelled test file than on held-out images of its own "
                "training file, so that file's labels are wrong often enough to cap the validation score; the model "
                "also learns from those wrong labels. `kaizen audit` lists the likely label errors; label smoothing and "
                "early stopping limit how much the model memorises them meanwhile."
            ),
            recommendations=rec.distinct(cfg, ["reg.label_smoothing=0.1", "early_stop.enabled=true"]),
            details={"val_acc": val_acc, "test_acc": test_acc, "gap": gap, "standard_error": error},
        )


def _cannot_tell(cfg, train_acc: float, val_acc: float, n_val: int) -> Finding | None:
    """An info finding when `n_val` validation images cannot show a gap of GAP_POINTS (3 standard errors
    wider), with the validation split that could; None when they can (then no gap means a healthy fit)."""
    variance = max(val_acc * (1 - val_acc), 1e-4)
    resolvable = GAP_STANDARD_ERRORS * math.sqrt(variance / n_val)
    if resolvable <= GAP_POINTS:
        return None
    needed = math.ceil(variance * (GAP_STANDARD_ERRORS / GAP_POINTS) ** 2)
    split = cfg.data.val_split
    pool = n_val / split if split > 0 else n_val
    wanted = min(MAX_VAL_SPLIT, math.ceil(100 * needed / pool) / 100)
    enough = wanted * pool >= needed
    fix = f"data.val_split={wanted:g}"
    recommendations = rec.distinct(cfg, [fix])
    gap = train_acc - val_acc
    return Finding(
        severity="info",
        code="fit_cannot_tell",
        title=f"Fit: cannot tell (validation set of {n_val} images)",
        evidence=(
            f"train accuracy {train_acc:.1%} vs validation {val_acc:.1%}: a gap of {100 * gap:.1f} points; "
            f"{n_val} validation images cannot show a gap below {100 * resolvable:.1f} points "
            f"({GAP_STANDARD_ERRORS:g} standard errors), so a gap of {100 * GAP_POINTS:g} points would pass unseen"
        ),
        explanation=(
            f"Judging the fit needs about {needed} validation images at this accuracy"
            + (
                f": --set {fix} holds out that many. "
                if enough
                else f"; even --set {fix} holds out only about {int(wanted * pool)}: more data, or k-fold "
                "(kaizen audit trains fold models) judges it. "
            )
            + "Until then the fit is neither healthy nor overfitted: it is unknown."
        ),
        recommendations=recommendations,
        reasons={fix: f"{needed} validation images resolve a {100 * GAP_POINTS:g}-point gap"}
        if recommendations
        else {},
        details={
            "val_size": n_val,
            "resolvable_gap": resolvable,
            "gap": gap,
            "needed_val_size": needed,
        },
    )


@finding_kind
class Overfitting(Kind):
    """The model fits the training data much better than it generalises (gap), or validation loss climbs."""

    scope = "run"
    code = "overfitting"
    thresholds = (GAP_POINTS, GAP_STANDARD_ERRORS, VAL_LOSS_RISE, UNDERFIT_FRACTION)

    def run(self, run: RunRecord) -> Finding | None:
        if len(run.val) < LAST_EPOCHS or len(run.train) < LAST_EPOCHS or _underfits(run):
            return None  # a model that has not fitted its training data cannot be overfitting it
        val_loss = [row["loss"] for row in run.val]
        train_loss = {row["epoch"]: row["loss"] for row in run.train}
        if not all(math.isfinite(loss) for loss in val_loss):
            return None
        smoothed = [
            statistics.mean(val_loss[max(0, index - 1) : index + 2]) for index in range(len(val_loss))
        ]
        best_smoothed = min(smoothed)
        onset_index = next(index for index, value in enumerate(smoothed) if value <= 1.02 * best_smoothed)
        onset = run.val[onset_index]["epoch"]
        train_acc = _end([row["acc"] for row in run.train])
        val_acc = _end([row["acc"] for row in run.val])
        gap = train_acc - val_acc
        n_val = run.summary.get("data", {}).get("val") or ASSUMED_VAL_SIZE
        standard_error = math.sqrt(max(val_acc * (1 - val_acc), 1e-4) / n_val)
        big_gap = gap >= GAP_POINTS and gap >= GAP_STANDARD_ERRORS * standard_error
        best_val = min(val_loss)
        rise = _end(val_loss) / best_val - 1 if best_val > 0 else 0.0
        chance = run.chance_loss or math.log(10)
        train_end = _end(list(train_loss.values()))
        train_fell = train_end < train_loss.get(onset, math.inf) and train_end < UNDERFIT_FRACTION * chance
        rising = rise >= VAL_LOSS_RISE and train_fell
        if not (big_gap or rising):
            known = run.summary.get("data", {}).get("val")
            return _cannot_tell(run.config, train_acc, val_acc, known) if known else None
        best_acc = max(row["acc"] for row in run.val)
        acc_drop = best_acc - val_acc
        if big_gap or acc_drop >= 2 * standard_error:
            severity, title = "warning", "Overfitting"
        else:
            severity, title = "info", "Validation loss rises while accuracy holds (over-confidence)"
        parts = [
            f"validation loss stopped improving at epoch {onset} (best {best_val:.3g}, last epochs {_end(val_loss):.3g}, "
            f"{rise:+.0%}) while train loss kept falling to {_end(list(train_loss.values())):.3g}",
            f"train accuracy {train_acc:.1%} vs validation {val_acc:.1%}: a gap of {100 * gap:.1f} points "
            f"(± {100 * standard_error:.1f} standard error on {n_val} validation images)",
        ]
        candidates = _generalisation_remedies(run)
        cfg = run.config
        return Finding(
            severity=severity,
            code="overfitting",
            title=title,
            evidence="; ".join(parts),
            explanation=(
                "After the onset epoch the model learns the training images themselves rather than what "
                "generalises: training loss keeps falling while validation stops improving. Augmentation and more "
                "data show it more variety; L2 and dropout limit how much it can memorise; early stopping keeps the "
                "weights from the best validation epoch."
            ),
            recommendations=rec.distinct(cfg, candidates),
            details={
                "onset_epoch": onset,
                "gap": gap,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "val_loss_best": best_val,
                "val_loss_rise": rise,
                "val_size": n_val,
            },
        )


@finding_kind
class Underfitting(Kind):
    """The model does not even fit the training data: train loss stays high (or at chance: not learning)."""

    scope = "run"
    code = "underfitting"
    thresholds = (UNDERFIT_FRACTION, STALLED_FRACTION)
    fit_symptom = True

    def run(self, run: RunRecord) -> Finding | None:
        losses, chance = run.train_losses(), run.chance_loss
        finite = [loss for loss in losses if math.isfinite(loss)]
        if not finite or chance is None:
            return None
        best = min(finite)
        if best < UNDERFIT_FRACTION * chance:
            return None
        recent = finite[-LAST_EPOCHS:]
        still_falling = len(recent) >= 2 and (recent[0] - recent[-1]) > 0.05 * recent[0]
        stalled = (
            best >= STALLED_FRACTION * chance and not still_falling
        )  # near chance and flat: not learning
        cfg = run.config
        candidates = []
        if still_falling:
            candidates.append(f"train.epochs={2 * cfg.train.epochs}")
        # With no cause among the gradient and unit statistics, the likely limits are the knobs this config set
        # unusually (the suspects come first), then capacity and regularisation.
        candidates += rec.wider(cfg)
        if cfg.model.dropout > 0:
            candidates.append("model.dropout=0.0")
        if cfg.reg.l2 > 0:
            candidates.append("reg.l2=0.0")
        if cfg.optim.weight_decay > 0:
            candidates.append("optim.weight_decay=0.0")
        if stalled:
            candidates += [*rec.adaptive_optimizer(cfg), *rec.batch_norm(cfg)]
        if not still_falling:
            candidates.append(rec.higher_lr(cfg, 3))
        accuracy = run.train[-1]["acc"]
        fixes = causes.attribute(cfg, causes.NOT_LEARNING, candidates)
        return Finding(
            severity="critical" if stalled else "warning",
            code="not_learning" if stalled else "underfitting",
            title="Not learning" if stalled else "Underfitting",
            evidence=(
                f"best train loss {best:.3g} is {best / chance:.0%} of chance ({chance:.3g}); train accuracy "
                f"{accuracy:.1%} at epoch {run.train[-1]['epoch']}; "
                + ("still falling at the end" if still_falling else "flat over the last epochs")
                + fixes.evidence()
            ),
            explanation=(
                "The model has not fitted its own training data, so it cannot do well on new data either. "
                + ("It is still improving: a longer budget helps. " if still_falling else "")
                + "Less regularisation, more capacity or a larger learning rate let it fit more."
            ),
            details={"best_train_loss": best, "chance_loss": chance, "still_falling": still_falling},
            **_fixes(fixes),
        )


# --- notes about the diagnosis itself (info) ------------------------------------------------------------


@finding_kind
class TooBrokenToJudge(Kind):
    """A run that learned nothing cannot be judged for overfitting, label noise or capacity."""

    scope = "run"
    code = "too_broken_to_judge"
    thresholds = (STALLED_FRACTION, CHANCE_ACCURACY_FACTOR)

    def run(self, run: RunRecord) -> Finding | None:
        finite = [loss for loss in run.train_losses() if math.isfinite(loss)]
        chance = run.chance_loss
        if not finite or chance is None or min(finite) < STALLED_FRACTION * chance:
            return None
        best_acc = max(row["acc"] for row in run.train)
        if best_acc > CHANCE_ACCURACY_FACTOR / (run.num_classes or 10):
            return None
        return Finding(
            "info",
            self.code,
            "Too broken to judge generalisation",
            f"the best train loss {min(finite):.3g} is no better than chance ({chance:.3g}), and so is the "
            f"best train accuracy {best_acc:.1%}",
            "A model that has learned nothing cannot be judged for overfitting, label noise or capacity; "
            "fix the findings above, then run the doctor on the new run.",
        )


@finding_kind
class InProgress(Kind):
    """The run is still running (or its process was killed): the findings cover the epochs so far."""

    scope = "run"
    code = "in_progress"

    def run(self, run: RunRecord) -> Finding | None:
        if run.status != "running":
            return None
        epochs = len(run.train)
        return Finding(
            "info",
            self.code,
            "Run still in progress",
            f"meta.json says running; {epochs} finished epoch(s) of {run.config.train.epochs} diagnosed",
            "The findings describe the epochs recorded so far; run the doctor again when training ends. "
            "(A run whose process was killed also stays 'running'; kaizen train --resume continues it.)",
            details={"epochs": epochs},
        )


@finding_kind
class NoStats(Kind):
    """The run recorded no per-layer statistics, so only metrics.csv and meta.json were read."""

    scope = "run"
    code = "no_stats"

    def run(self, run: RunRecord) -> Finding | None:
        if run.has_stats:
            return None
        if run.config.log.stats:
            why = "the run recorded statistics but stopped before its first sampled step"
            how = "Lower log.stats_every to sample earlier steps."
        else:
            why = "the run was trained with log.stats=false"
            how = "Train again with --set log.stats=true (the default) to record them."
        return Finding(
            "info",
            self.code,
            "No per-layer statistics",
            f"stats.jsonl holds no layer records: {why}",
            "Gradient, dead-unit, saturation and update-size checks need the statistics recorder; the "
            f"findings above come from metrics.csv and meta.json only. {how}",
            recommendations=[] if run.config.log.stats else ["log.stats=true"],
        )


@finding_kind
class StatsCorrupt(Kind):
    """Lines of stats.jsonl that are not records were skipped."""

    scope = "run"
    code = "stats_corrupt"

    def run(self, run: RunRecord) -> Finding | None:
        if not run.corrupt_lines:
            return None
        return Finding(
            "info",
            self.code,
            "Corrupt lines skipped in stats.jsonl",
            "; ".join(run.corrupt_lines),
            "Those lines are not JSON records with an epoch and a kind; the rest of the file was used.",
            details={"lines": run.corrupt_lines},
        )
