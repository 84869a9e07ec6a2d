"""`kaizen check`: the recipe's sanity checks, pass/fail, before a long run.

Each check trains at most a few hundred steps on the config's own data, model and optimiser, so a broken
recipe is caught in seconds rather than after the full budget: the data (class balance, input scale, test
images that are also training images), the loss at initialisation, one batch overfitted to 100%, and two
controls (zero inputs, shuffled labels) that must stay near chance while the real data learns. Augmentation,
schedules and regularisers are left out: the checks ask whether the bare recipe can learn at all.

Each check is a finding kind of scope "recipe" (`kaizen.doctor.findings`), registered where it is defined and
run in that order on a `RecipeContext`; its Finding is severity info when it passes and critical when it fails,
titled with the check's name, the advice in its explanation. `passed(finding)` reads the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kaizen.config import Config
from kaizen.doctor import recommend as rec
from kaizen.doctor.causes import NOT_LEARNING, attribute
from kaizen.doctor.findings import Finding, Kind, Threshold, finding_kind, kinds
from kaizen.doctor.measures import class_balance, exact_copies
from kaizen.training import estimate
from kaizen.training.threads import set_threads

# Class balance: the rarest class at least a fifth of the commonest (digits 0.95, mnist-10k 0.79). Below that,
# accuracy hides the rare classes and the loss needs weights or resampling.
BALANCE_RATIO = Threshold("BALANCE_RATIO", 0.2, "digits 0.95, mnist-10k 0.79")
# Input scale: initialisation schemes assume inputs of about unit scale. Standardised inputs have mean 0 and
# std 1; [0, 1] pixels (data.normalize=false) have std 0.3-0.45 and still train; raw 0-255 pixels (std 80) do not.
INPUT_MEAN_MAX, INPUT_STD_RANGE = 1.0, (0.1, 10.0)
# Overlap: at most 1% of the test images may also be training images (exact content); more inflates the test score.
OVERLAP_MAX = Threshold("OVERLAP_MAX", 0.01, "1% of test images copied inflates the test score visibly")
# Loss at initialisation: a classifier that knows nothing predicts about uniformly, ln(classes); within
# half of it either way (healthy presets start at 0.98-1.05 × ln(classes)). Far above: confidently wrong logits.
INIT_LOSS_RANGE = (0.5, 1.5)
INIT_EXAMPLES = 512
# One batch: 32 images memorised to 100% within 300 steps at the config's rate.
ONE_BATCH, ONE_BATCH_STEPS, EVAL_EVERY = 32, 300, 10
# Controls: 150 steps each on the real data, on zero inputs and on shuffled labels. The real run must beat the
# commonest class's share by 20 points; the controls may not beat it by more than 3 standard errors of the
# validation accuracy plus 2 points.
CONTROL_STEPS, LEARNS_MARGIN, CONTROL_ERRORS, CONTROL_SLACK = 150, 0.2, 3.0, 0.02


@dataclass
class RecipeContext:
    """What a check reads: the config and its data, loaded on the CPU."""

    cfg: Config
    data: Any


def passed(finding: Finding) -> bool:
    """Whether a check's finding is a pass (info) rather than a failure (critical)."""
    return not finding.is_problem


def _result(
    kind: type[Kind] | Kind,
    name: str,
    ok: bool,
    evidence: str,
    advice: str,
    fixes: tuple[list[str], dict[str, str]] = ([], {}),
) -> Finding:
    """A check's finding: info when it passes, critical with `advice` (and the `fixes`, overrides with their
    reasons, that a failure of the recipe can try) when it fails."""
    if ok:
        return Finding("info", kind.code, name, evidence, "")
    recommendations, reasons = fixes
    return Finding("critical", kind.code, name, evidence, advice, list(recommendations), reasons=dict(reasons))


def learning_fixes(cfg: Config) -> tuple[list[str], dict[str, str]]:
    """The overrides a recipe that does not learn can try, the knobs it turned away from usual first (as the
    doctor attributes "not learning"), then the rate a decade either way, the initialisation matched to the
    activation and batch norm. A failed check carries them, so `kaizen improve` races them instead of stopping."""
    lr = cfg.optim.lr
    generic = [f"optim.lr={lr * 10:.3g}", f"optim.lr={lr / 10:.3g}", *rec.matched_init(cfg), "model.norm=batch"]
    reasons = {
        generic[0]: "a rate too small moves the weights too little to fit even one batch",
        generic[1]: "a rate too large makes every step overshoot",
        "model.norm=batch": "batch norm keeps each layer's signal at unit scale whatever the initialisation",
    }
    for fix in rec.matched_init(cfg):
        reasons[fix] = f"the initialisation designed for {cfg.model.activation} keeps its layers at unit scale"
    found = attribute(cfg, NOT_LEARNING, generic, reasons)
    return found.recommendations, found.reasons


def run_checks(cfg: Config) -> list[Finding]:
    """Run every check on `cfg` (on the CPU, with the config's seed); KaizenError on bad input."""
    from kaizen.data import load_data

    set_threads(cfg.train.threads)  # the cores free when unset
    estimate.check(cfg, "cpu")  # a model or image size that cannot fit: one line, before decoding
    context = RecipeContext(cfg, load_data(cfg.data, "cpu"))
    results: list[Finding] = []
    for kind in kinds("recipe"):
        found = kind().run(context)
        results += found if isinstance(found, list) else [found]
    return results


def _model(cfg: Config, data) -> nn.Module:
    from kaizen.nn import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    from kaizen.training.optim import build_optimizer

    return build_optimizer(model, cfg.optim)


@finding_kind
class ClassBalanceCheck(Kind):
    """The rarest class's training count against the commonest's."""

    scope = "recipe"
    code = "class_balance"
    thresholds = (BALANCE_RATIO,)

    def run(self, context: RecipeContext) -> Finding:
        data = context.data
        balance = class_balance(data.y_train.numpy(), data.num_classes)
        counts, ratio = balance.counts, balance.ratio
        rare, common = min(counts), max(counts)
        names = data.class_names
        evidence = (
            f"{len(counts)} classes; rarest {names[counts.index(rare)]} {rare}, commonest "
            f"{names[counts.index(common)]} {common} (ratio {ratio:.2f}; pass: {BALANCE_RATIO:g} or more)"
        )
        advice = (
            "Accuracy hides a class this rare: the model can ignore it and lose little. Collect more of it, or "
            "report per-class recall (kaizen eval) and resample the rare classes."
        )
        return _result(
            self, "class balance", ratio >= BALANCE_RATIO, evidence, "" if ratio >= BALANCE_RATIO else advice
        )


@finding_kind
class InputScale(Kind):
    """The training inputs' mean and std per channel, as the model sees them."""

    scope = "recipe"
    code = "input_scale"

    def run(self, context: RecipeContext) -> Finding:
        data, cfg = context.data, context.cfg
        x = data.x_train
        means = x.mean(dim=(0, 2, 3)).tolist()
        stds = x.std(dim=(0, 2, 3)).tolist()
        low, high = INPUT_STD_RANGE
        passed = all(abs(m) <= INPUT_MEAN_MAX for m in means) and all(low <= s <= high for s in stds)
        evidence = (
            f"mean {', '.join(f'{m:.3g}' for m in means)}, std {', '.join(f'{s:.3g}' for s in stds)} per channel "
            f"(data.normalize={str(cfg.data.normalize).lower()}; pass: |mean| ≤ {INPUT_MEAN_MAX:g}, std {low:g} to {high:g})"
        )
        advice = (
            "Initialisation assumes inputs of about unit scale; these make the first layer's outputs and the first "
            "logits far too large or too small. Use --set data.normalize=true (standardise with the training "
            "split's statistics), or check that the pixels are stored as 0-255 integers or 0-1 floats."
        )
        return _result(self, "input scale", passed, evidence, "" if passed else advice)


@finding_kind
class TrainTestOverlap(Kind):
    """Test images whose exact content is also among the training or validation images."""

    scope = "recipe"
    code = "train_test_overlap"
    thresholds = (OVERLAP_MAX,)

    def run(self, context: RecipeContext) -> Finding:
        data = context.data
        seen = torch.cat([data.x_train, data.x_val]).numpy()
        test = exact_copies(data.x_test.numpy(), seen)
        shared = sum(index is not None for index in test)
        share = shared / len(test) if test else 0.0
        passed = share <= OVERLAP_MAX
        evidence = (
            f"{shared} of {len(test)} test images ({share:.1%}) are identical to a training or validation image "
            f"(pass: {OVERLAP_MAX:.0%} or fewer)"
        )
        advice = (
            "The test score then partly measures memory, not generalisation. Remove the duplicates from the test "
            "set (kaizen audit lists them) or split the data so that copies stay together."
        )
        return _result(self, "train/test overlap", passed, evidence, "" if passed else advice)


def _first(data, count: int) -> torch.Tensor:
    """The first `count` training images, normalised (without normalising the whole split)."""
    return data.train_batch(torch.arange(min(count, len(data.y_train))))


@finding_kind
class InitialLoss(Kind):
    """The loss of the untrained model against ln(classes)."""

    scope = "recipe"
    code = "initial_loss"

    def run(self, context: RecipeContext) -> Finding:
        cfg, data = context.cfg, context.data
        model = _model(cfg, data).eval()
        with torch.no_grad():
            loss = nn.functional.cross_entropy(
                model(_first(data, INIT_EXAMPLES)), data.y_train[:INIT_EXAMPLES]
            )
        chance = math.log(data.num_classes)
        ratio = loss.item() / chance
        low, high = INIT_LOSS_RANGE
        passed = math.isfinite(ratio) and low <= ratio <= high
        evidence = (
            f"loss {loss.item():.3g} at initialisation vs ln({data.num_classes}) = {chance:.3g} "
            f"({ratio:.2f}×; pass: {low:g}× to {high:g}×)"
        )
        if not math.isfinite(ratio) or ratio > high:
            advice = (
                "The untrained model is confidently wrong: its logits are far too large. Check the input scale "
                "(data.normalize=true) and the initialisation (init.weights=he_normal for ReLU, xavier_normal for "
                "sigmoid/tanh; a large init.std or init.bias)."
            )
        else:
            advice = (
                "An untrained model should know nothing; a loss far below chance suggests the labels leak into the "
                "inputs or the classes are very unbalanced. Look at the data (kaizen data, kaizen audit)."
            )
        return _result(self, "loss at initialisation", passed, evidence, "" if passed else advice)


@finding_kind
class OneBatch(Kind):
    """Memorise one batch of 32 training images: a model and optimiser that cannot are broken."""

    scope = "recipe"
    code = "one_batch"

    def run(self, context: RecipeContext) -> Finding:
        cfg, data = context.cfg, context.data
        model = _model(cfg, data)
        optimizer = _optimizer(cfg, model)
        x, y = _first(data, ONE_BATCH), data.y_train[:ONE_BATCH]
        accuracy, steps = 0.0, 0
        for steps in range(1, ONE_BATCH_STEPS + 1):
            model.train()
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                break
            if steps % EVAL_EVERY == 0:
                model.eval()
                with torch.no_grad():
                    accuracy = (model(x).argmax(1) == y).float().mean().item()
                if accuracy == 1.0:
                    break
        passed = accuracy == 1.0
        evidence = (
            f"{len(y)} images fitted to {accuracy:.0%} in {steps} steps "
            f"(optim {cfg.optim.name} at lr {cfg.optim.lr:g}; pass: 100% within {ONE_BATCH_STEPS})"
        )
        advice = (
            "Any working model memorises 32 images. If it cannot, the optimisation is broken: try a learning rate "
            "10× either way (kaizen lr-find), init.weights=he_normal or model.norm=batch, and check that the last "
            "layer is not squashed (an activation on the logits)."
        )
        return _result(
            self, "one batch overfits", passed, evidence, "" if passed else advice, learning_fixes(cfg)
        )


def _train_briefly(cfg: Config, data, x: torch.Tensor, y: torch.Tensor) -> float:
    """Validation accuracy after CONTROL_STEPS steps on (x, y) from the seeded initialisation."""
    model = _model(cfg, data)
    optimizer = _optimizer(cfg, model)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    batch = min(cfg.train.batch_size, len(y))
    per_epoch = len(y) // batch
    model.train()
    for step in range(CONTROL_STEPS):
        if step % per_epoch == 0:  # a fresh shuffle each pass over the data
            order = torch.randperm(len(y), generator=generator)
        start = (step % per_epoch) * batch
        index = order[start : start + batch]
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return (model(data.x_val).argmax(1) == data.y_val).float().mean().item()


@finding_kind
class Controls(Kind):
    """Real data must learn; zero inputs and shuffled labels must stay near the commonest class's share."""

    scope = "recipe"
    code = "controls"

    def run(self, context: RecipeContext) -> list[Finding]:
        cfg, data = context.cfg, context.data
        if len(data.y_val) == 0:
            return [
                _result(
                    self,
                    "controls",
                    False,
                    "no validation split (data.val_split=0)",
                    "Set data.val_split=0.1.",
                )
            ]
        majority = torch.bincount(data.y_val, minlength=data.num_classes).max().item() / len(data.y_val)
        error = math.sqrt(majority * (1 - majority) / len(data.y_val))
        ceiling = majority + CONTROL_ERRORS * error + CONTROL_SLACK
        real = _train_briefly(cfg, data, data.x_train, data.y_train)
        zeros = _train_briefly(cfg, data, torch.zeros_like(data.x_train), data.y_train)
        shuffled_labels = data.y_train[
            torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(1))
        ]
        shuffled = _train_briefly(cfg, data, data.x_train, shuffled_labels)
        steps = f"{CONTROL_STEPS} steps of batch {min(cfg.train.batch_size, len(data.y_train))}"
        learns = real >= majority + LEARNS_MARGIN
        return [
            _result(
                self,
                "real data learns",
                learns,
                f"validation accuracy {real:.1%} after {steps} (commonest class {majority:.1%}; pass: "
                f"{majority + LEARNS_MARGIN:.1%} or more)",
                ""
                if learns
                else "The recipe does not learn in its first steps: run the full budget only after fixing it. Try "
                "kaizen lr-find for the learning rate, and init.weights / model.norm=batch for the gradients' flow.",
                learning_fixes(cfg),
            ),
            *(self._controls(zeros, shuffled, ceiling) if learns else self._not_judged(real)),
        ]

    def _not_judged(self, real: float) -> list[Finding]:
        """A recipe that does not learn real data says nothing by scoring above chance after training on zero
        inputs or shuffled labels (its random features decide): the controls wait until it learns."""
        why = f"not judged: the recipe does not learn real data yet ({real:.1%})"
        return [
            Finding("info", self.code, name, why, "") for name in ("zero-input control", "shuffled-label control")
        ]

    def _controls(self, zeros: float, shuffled: float, ceiling: float) -> list[Finding]:
        return [
            _result(
                self,
                "zero-input control",
                zeros <= ceiling,
                f"validation accuracy {zeros:.1%} with every input set to 0 (pass: {ceiling:.1%} or less)",
                ""
                if zeros <= ceiling
                else "A model that sees no input can only learn the class frequencies; scoring higher means the "
                "validation labels can be guessed without the images (a leak, e.g. examples sorted by class).",
            ),
            _result(
                self,
                "shuffled-label control",
                shuffled <= ceiling,
                f"validation accuracy {shuffled:.1%} after training on shuffled labels (pass: {ceiling:.1%} or less)",
                ""
                if shuffled <= ceiling
                else "With labels unrelated to the images nothing should generalise; scoring higher means the "
                "validation set overlaps the training set or the evaluation is wrong.",
            ),
        ]
