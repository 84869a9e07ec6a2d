"""What a round races: each candidate a few overrides of the incumbent, with the finding or rule it comes from.

Five sources, in this order: the doctor's findings on the incumbent's run (their suggested overrides); the
config's own knobs that sit far from their usual values (always offered back: racing can only pick among what
it is offered); a learning-rate range test when the rate is in doubt; a playbook of moves that are not
faults (a schedule, augmentation suited to the data, regularisation when the gap grows, capacity or epochs
when the model underfits); and, last, the incumbent's neighbourhood: each tunable knob one step either way
within its usual band, so a healthy recipe still has moves to race once the others are spent (a search
would try them too, blindly). A move that changes nothing, or was raced from the same incumbent before, is
left out and said so. During a race, the moves that beat the incumbent in the first rung are also raced
together (`combine`): the best two, and all of them that set different knobs.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from kaizen import registry
from kaizen.config import Config, dotted
from kaizen.errors import KaizenError
from kaizen.improve.diagnosis import Problem

# Usual values of the knobs that are not in a registry (the optimisers' usual rates are: registry.OPTIMIZERS).
# Beyond these a knob is "far from usual" and moving it back is always a candidate.
LR_FACTOR = 10.0  # a rate more than 10x from the optimiser's usual rate either way
WEIGHT_DECAY = {"adamw": (0.1, 0.01)}  # optimiser: (far above, usual); others: coupled L2 decay
COUPLED_DECAY = (1e-3, 0.0)  # weight_decay above 1e-3 in an optimiser that adds it to the gradient
L1 = (1e-4, 0.0)
L2 = (1e-3, 0.0)
ACTIVATION_SPARSITY = (1e-2, 0.0)
DROPOUT = (0.5, 0.3)  # above 0.5 -> 0.3
LABEL_SMOOTHING = (0.3, 0.1)
BATCH_SIZE = (8, 512, 32)  # below 8 or above 512 -> 32
NORMAL_STD = (1e-3, 1.0)  # init.weights=normal with std outside (0.001, 1) is far from any scheme
UNUSUAL_INITS = ("zeros",)
# Playbook thresholds: the gap (train - validation accuracy at the end) beyond which regularising is worth a
# try, and the train accuracy below which the model underfits (more capacity, more epochs).
GAP = 0.05
UNDERFIT_TRAIN_ACC = 0.97
RATE_STEP = 3.0  # an underfitting model tries its rate times this (half a decade), within the usual band
# Rates of doubt: findings whose cause is the learning rate.
RATE_FINDINGS = ("lr_too_high", "unstable_loss", "lr_too_low", "divergence", "not_learning")
FIRST_RECOMMENDATIONS = 2  # per finding
# The neighbourhood's steps: the rate and weight decay by RATE_STEP, the batch size by 2, dropout by 0.1,
# epochs by EPOCH_STEP; a weight decay of 0 starts at the optimiser's small usual value.
EPOCH_STEP = 1.5
DROPOUT_STEP = 0.1
SMALL_DECAY = {"adamw": 0.05}  # others: SMALL_COUPLED_DECAY
SMALL_COUPLED_DECAY = 5e-4


@dataclass
class Candidate:
    """A move: overrides of the incumbent, where it comes from (a finding code or a rule), and why."""

    overrides: tuple[str, ...]
    source: str
    why: str
    cost: float = 1.0  # the run's cost relative to the incumbent's: epochs known ahead, the rest measured
    late: bool = False  # it regularises, so it enters the race at the longest short rung (`pays_late`)

    @property
    def id(self) -> str:
        """A folder name: the overrides, readable, with a short digest to keep it unique."""
        text = "__".join(self.overrides)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:48].strip("-")
        return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"

    @property
    def label(self) -> str:
        return " ".join(self.overrides)

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "overrides": list(self.overrides), "source": self.source, "why": self.why}
        return {**out, "late": True} if self.late else out


# Knobs whose larger value regularises: a move that only turns these (or augmentation) up, with or without more
# epochs, trades early fit for later generalisation. A lower rate is left out: it is also how a rate that is far
# too high is repaired, and that repair shows at once.
REGULARISERS = (
    "model.dropout",
    "optim.weight_decay",
    "reg.l1",
    "reg.l2",
    "reg.label_smoothing",
    "reg.activation_sparsity",
)


def pays_late(cfg: Config, overrides: tuple[str, ...]) -> bool:
    """Whether the move regularises: it turns augmentation or a regulariser up, and changes nothing else but (more)
    epochs. Such a move slows the first epochs by design, so successive halving's shortest
    rungs would drop it before it can pay: on mnist-10k's 10-epoch MLP augmentation lost every 1-epoch first rung
    of the benchmark, and gains +0.6 validation points at full length, +1.45 with 20 epochs (5 seeds,
    benchmarks/improve_moves.py). A late move enters the race at the longest short rung instead."""
    try:
        before, after = dotted(cfg.to_dict()), dotted(cfg.override(list(overrides)).to_dict())
    except KaizenError:
        return False
    changed = [key for key in after if after[key] != before.get(key)]
    if not changed:
        return False
    regularises = False
    for key in changed:
        old, new = before.get(key), after[key]
        if key == "train.epochs" and new > old:
            continue
        if key.startswith("augment.") and isinstance(new, (bool, int, float)) and new > old:
            regularises = True
        elif key in REGULARISERS and new > old:
            regularises = True
        else:
            return False  # a change that is not regularising: judged from the first rung like any other
    return regularises


# Keys that change how a run learns but not what one epoch costs: a candidate setting only these (and the
# epochs, whose cost is its prior) costs what the incumbent does per epoch. Other keys (the model, the batch
# size, augmentation, image size, precision) are measured in the race: a 1-epoch run of a small model lasts
# milliseconds, and its timing says more about the machine's load than about the candidate.
COST_NEUTRAL = (
    "optim.",
    "schedule.",
    "reg.",
    "init.",
    "train.epochs",
    "model.dropout",
    "data.exclude",
    "data.keep",
)


def costs_as_incumbent(candidate: Candidate) -> bool:
    """Whether `candidate`'s cost per epoch is the incumbent's (all its keys in COST_NEUTRAL)."""
    return all(o.partition("=")[0].strip().startswith(COST_NEUTRAL) for o in candidate.overrides)


def _is_noop(cfg: Config, overrides: tuple[str, ...]) -> bool:
    try:
        return cfg.override(list(overrides)).to_dict() == cfg.to_dict()
    except KaizenError:
        return True  # an override that does not apply to this config is no move at all


# Overrides a race cannot judge: logging changes nothing, and these data keys change which examples are in the
# validation or test split (the doctor's "cannot tell" suggests data.val_split), so scores would not compare.
NOT_RACED = ("log.", "data.exclude", "data.keep", "data.val_split", "data.test_split", "data.split_seed")


def from_findings(problems: list[Problem]) -> list[Candidate]:
    """The first recommendations of each finding that has any, counting only those no earlier finding offered
    (and leaving out those in NOT_RACED): a finding whose first fix repeats an earlier one's still brings two of its
    own. On the sigmoid MLP the recipe check's Xavier repeated the vanishing-gradient finding's second fix, which
    left out its third, ReLU: the best single fix there (94.9% validation on 5 seeds, batch norm 93.9%)."""
    moves = []
    offered: set[str] = set()
    for problem in problems:
        useful = [o for o in problem.overrides if not o.startswith(NOT_RACED) and o not in offered]
        offered.update(useful[:FIRST_RECOMMENDATIONS])
        for override in useful[:FIRST_RECOMMENDATIONS]:
            cost = 2.0 if override.startswith("train.epochs") else 1.0  # other costs are measured in the race
            moves.append(Candidate((override,), f"doctor: {problem.code}", problem.evidence, cost))
    return moves


def far_from_usual(cfg: Config) -> list[Candidate]:
    """The config's own knobs that sit far from their usual values, each moved back to it."""
    moves = []
    usual_lr = registry.OPTIMIZERS.traits(cfg.optim.name).usual_lr
    lr = cfg.optim.lr
    if lr > LR_FACTOR * usual_lr or lr < usual_lr / LR_FACTOR:
        moves.append(
            Candidate(
                (f"optim.lr={usual_lr:g}",),
                "rule: rate far from usual",
                f"optim.lr={lr:g} is more than {LR_FACTOR:g}x from {cfg.optim.name}'s usual rate {usual_lr:g}",
            )
        )
    far, usual = WEIGHT_DECAY.get(cfg.optim.name, COUPLED_DECAY)
    if cfg.optim.weight_decay > far:
        moves.append(
            Candidate(
                (f"optim.weight_decay={usual:g}",),
                "rule: strong weight decay",
                f"optim.weight_decay={cfg.optim.weight_decay:g} is above {far:g} for {cfg.optim.name}",
            )
        )
    for key, value, (limit, back) in (
        ("reg.l1", cfg.reg.l1, L1),
        ("reg.l2", cfg.reg.l2, L2),
        ("reg.activation_sparsity", cfg.reg.activation_sparsity, ACTIVATION_SPARSITY),
        ("model.dropout", cfg.model.dropout, DROPOUT),
        ("reg.label_smoothing", cfg.reg.label_smoothing, LABEL_SMOOTHING),
    ):
        if value > limit:
            moves.append(
                Candidate(
                    (f"{key}={back:g}",), "rule: strong regulariser", f"{key}={value:g} is above {limit:g}"
                )
            )
    low, high, back = BATCH_SIZE
    if not low <= cfg.train.batch_size <= high:
        moves.append(
            Candidate(
                (f"train.batch_size={back}",),
                "rule: extreme batch size",
                f"train.batch_size={cfg.train.batch_size} is outside {low}-{high}",
            )
        )
    weights, std = cfg.init.weights, cfg.init.std
    if weights in UNUSUAL_INITS or (weights == "normal" and not NORMAL_STD[0] < std < NORMAL_STD[1]):
        shown = f"normal(std {std:g})" if weights == "normal" else weights
        moves.append(
            Candidate(
                ("init.weights=default",),
                "rule: unusual initialisation",
                f"init.weights={shown} is far from any scaled scheme (default, Xavier, He)",
            )
        )
    return moves


def rate_in_doubt(cfg: Config, problems: list[Problem]) -> str | None:
    """Why the learning rate is in doubt (a finding about it, or a rate far from usual), or None."""
    codes = [p.code for p in problems if p.code in RATE_FINDINGS]
    if codes:
        return f"the doctor found {', '.join(codes)}"
    usual_lr = registry.OPTIMIZERS.traits(cfg.optim.name).usual_lr
    if cfg.optim.lr > LR_FACTOR * usual_lr or cfg.optim.lr < usual_lr / LR_FACTOR:
        return f"optim.lr={cfg.optim.lr:g} is far from {cfg.optim.name}'s usual {usual_lr:g}"
    return None


def from_lr_find(suggestion: float | None, why: str) -> list[Candidate]:
    """The range test's suggested rate, rounded to two significant digits."""
    if suggestion is None or not math.isfinite(suggestion):
        return []
    rate = float(f"{suggestion:.2g}")
    return [Candidate((f"optim.lr={rate:g}",), "lr-find", f"{why}; the range test suggests {rate:g}")]


Moves = tuple[list[Candidate], list[dict[str, str]]]  # the moves made, and those not made with why


def playbook(cfg: Config, summary: dict[str, Any]) -> Moves:
    """Moves that are not faults, read from the incumbent's run; and the moves it does not make, with why."""
    final = summary.get("final", {})
    train_acc, val_acc = final.get("train_acc"), final.get("val_acc")
    channels = (summary.get("data", {}).get("input_shape") or [1])[0]
    moves: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    for found, not_made in (
        _schedule(cfg),
        _augmentation(cfg, channels),
        _regularisation(cfg, train_acc, val_acc),
        _capacity(cfg, train_acc),
        _backbone(cfg),
    ):
        moves += found
        skipped += not_made
    return moves, skipped


def _schedule(cfg: Config) -> Moves:
    if cfg.schedule.name != "constant":
        return [], []
    return [
        Candidate(
            ("schedule.name=cosine",),
            "playbook: schedule",
            "a constant rate; cosine decay usually ends lower",
        )
    ], []


def _augments(cfg: Config) -> bool:
    switches = [
        field
        for name in registry.AUGMENTATIONS.names()
        for field in registry.AUGMENTATIONS.traits(name).fields
    ]
    return any(getattr(cfg.augment, field) for field in switches)


def _train_acc(cfg: Config, value: float) -> str:
    """'train accuracy 92.8%', saying so when it was measured on augmented images (lower by design)."""
    return f"train accuracy {value:.1%}" + (" (on augmented images)" if _augments(cfg) else "")


def _augmentation(cfg: Config, channels: int) -> Moves:
    """Augmentation suited to the data: shapes for single-channel images (never flips), flips for photos."""
    if _augments(cfg):
        return [], [{"move": "augmentation", "why": "the config already augments"}]
    if channels == 1:
        why = (
            "single-channel images (digits, characters): small rotations, shifts, shear and zoom; no flips, which "
            "change a digit's meaning"
        )
        shapes: tuple[str, ...] = ("augment=kaggle",)
        moves = _with_longer_training(cfg, shapes, why)
        return moves, [
            {"move": "augment.hflip=true", "why": "flips change handwriting's meaning (a mirrored 2 or 7)"}
        ]
    photos = ("augment.hflip=true", "augment.width_shift=0.1", "augment.height_shift=0.1")
    return _with_longer_training(
        cfg, photos, "colour photos: left-right flips and small shifts keep the class"
    ), []


def _with_longer_training(cfg: Config, augment: tuple[str, ...], why: str) -> list[Candidate]:
    """The augmentation at the incumbent's epochs, and with twice as many: each epoch shows harder variants of
    every image, so the model fits them more slowly (mnist-10k's 10-epoch MLP, 5 seeds: +0.6 validation points at
    10 epochs, +1.45 at 20, where 20 epochs alone gave +0.08; benchmarks/improve_moves.py)."""
    longer = 2 * cfg.train.epochs
    return [
        Candidate(augment, "playbook: augmentation", why),
        Candidate(
            (*augment, f"train.epochs={longer}"),
            "playbook: augmentation",
            f"{why}; with {longer} epochs instead of {cfg.train.epochs}, since augmented images are learnt more slowly",
            cost=2.0,
        ),
    ]


def _regularisation(cfg: Config, train_acc: float | None, val_acc: float | None) -> Moves:
    """Dropout and label smoothing when the train/validation gap exceeds GAP."""
    if train_acc is None or val_acc is None:
        return [], []
    gap = train_acc - val_acc
    if gap <= GAP:
        return [], [
            {
                "move": "more regularisation",
                "why": f"the gap is {gap:.1%}, at most {GAP:.0%}: nothing to close",
            }
        ]
    evidence = f"{_train_acc(cfg, train_acc)} vs validation {val_acc:.1%} (gap {gap:.1%} > {GAP:.0%})"
    moves = []
    if cfg.model.dropout <= DROPOUT[0] - 0.2:
        moves.append(
            Candidate((f"model.dropout={cfg.model.dropout + 0.2:.2g}",), "playbook: regularise", evidence)
        )
    moves.append(Candidate(("reg.label_smoothing=0.1",), "playbook: regularise", evidence))
    return moves, []


def _capacity(cfg: Config, train_acc: float | None) -> Moves:
    """A higher rate, more epochs and (for the hidden-layer MLP) more width when the model underfits."""
    if train_acc is None:
        return [], []
    if train_acc >= UNDERFIT_TRAIN_ACC:
        return [], [
            {"move": "more epochs or width", "why": f"{_train_acc(cfg, train_acc)}: not underfitting"}
        ]
    evidence = f"{_train_acc(cfg, train_acc)} < {UNDERFIT_TRAIN_ACC:.0%}: the model underfits"
    moves, skipped = [], []
    usual_lr = registry.OPTIMIZERS.traits(cfg.optim.name).usual_lr
    higher = float(f"{RATE_STEP * cfg.optim.lr:.2g}")
    if higher <= LR_FACTOR * usual_lr:  # within the same epochs a larger step learns more, at no extra cost
        why = f"{evidence}; optim.lr={higher:g} stays within {LR_FACTOR:g}x of {cfg.optim.name}'s usual {usual_lr:g}"
        moves.append(Candidate((f"optim.lr={higher:g}",), "playbook: underfitting", why))
    moves.append(
        Candidate((f"train.epochs={2 * cfg.train.epochs}",), "playbook: underfitting", evidence, cost=2.0)
    )
    wider = [2 * width for width in cfg.model.hidden]
    widen = (f"model.hidden=[{','.join(map(str, wider))}]",)
    if not _width_is_hidden(cfg) or _is_noop(cfg, widen):
        skipped.append({"move": "wider model", "why": "the model's width is not set by model.hidden"})
    else:
        moves.append(Candidate(widen, "playbook: underfitting", evidence))
    return moves, skipped


def _width_is_hidden(cfg: Config) -> bool:
    """Whether model.hidden sets the model's width (the mlp preset, no custom layers, no backbone)."""
    return (
        cfg.model.preset == "mlp"
        and bool(cfg.model.hidden)
        and not cfg.model.layers
        and not cfg.model.backbone
    )


def _backbone(cfg: Config) -> Moves:
    """The configured backbone's pretrained weights, when the config names a backbone and they are at hand."""
    if not cfg.model.backbone:
        return [], [{"move": "pretrained backbone", "why": "the config names no backbone (model.backbone)"}]
    if cfg.model.pretrained is not False:
        return [], [{"move": "pretrained backbone", "why": "the backbone is pretrained already"}]
    from kaizen.nn.backbone import weights_at_hand

    found = weights_at_hand(cfg.model.backbone)
    if found is None:
        why = f"no weights for {cfg.model.backbone} on this machine (kaizen models lists what is at hand)"
        return [], [{"move": "pretrained backbone", "why": why}]
    where, path = found
    why = f"ImageNet weights of {cfg.model.backbone} are at hand ({where}); fine-tuning them is the largest lever on small photo sets"
    return [Candidate((f"model.pretrained={path}",), "playbook: pretrained backbone", why)], []


def neighbours(cfg: Config) -> list[Candidate]:
    """The incumbent's neighbourhood: each knob a search would tune, one step either way within its usual band."""
    moves: list[Candidate] = []

    def step(override: str, why: str, cost: float = 1.0) -> None:
        moves.append(Candidate((override,), "neighbourhood", why, cost))

    usual_lr = registry.OPTIMIZERS.traits(cfg.optim.name).usual_lr
    for factor, way in ((RATE_STEP, "up"), (1 / RATE_STEP, "down")):
        rate = float(f"{cfg.optim.lr * factor:.2g}")
        if usual_lr / LR_FACTOR <= rate <= LR_FACTOR * usual_lr:
            step(f"optim.lr={rate:g}", f"the rate half a decade {way} ({cfg.optim.lr:g} -> {rate:g})")
    epochs = max(cfg.train.epochs + 1, round(EPOCH_STEP * cfg.train.epochs))
    step(
        f"train.epochs={epochs}", f"{epochs} epochs instead of {cfg.train.epochs}", epochs / cfg.train.epochs
    )
    if _width_is_hidden(cfg):
        wider = ",".join(str(2 * width) for width in cfg.model.hidden)
        step(f"model.hidden=[{wider}]", "twice the hidden width")
    low, high, _ = BATCH_SIZE
    for size, way in ((cfg.train.batch_size // 2, "half"), (cfg.train.batch_size * 2, "twice")):
        if low <= size <= high:
            step(f"train.batch_size={size}", f"{way} the batch size ({cfg.train.batch_size} -> {size})")
    decay = cfg.optim.weight_decay
    far, _ = WEIGHT_DECAY.get(cfg.optim.name, COUPLED_DECAY)
    more = SMALL_DECAY.get(cfg.optim.name, SMALL_COUPLED_DECAY) if decay == 0 else decay * RATE_STEP
    if more <= far:
        step(f"optim.weight_decay={more:.2g}", f"weight decay {decay:g} -> {more:.2g}")
    if decay > 0:
        step(
            f"optim.weight_decay={decay / RATE_STEP:.2g}",
            f"weight decay {decay:g} -> {decay / RATE_STEP:.2g}",
        )
    dropout = cfg.model.dropout
    if dropout + DROPOUT_STEP <= DROPOUT[0]:
        step(
            f"model.dropout={dropout + DROPOUT_STEP:.2g}",
            f"dropout {dropout:g} -> {dropout + DROPOUT_STEP:.2g}",
        )
    if dropout >= DROPOUT_STEP:
        step(
            f"model.dropout={dropout - DROPOUT_STEP:.2g}",
            f"dropout {dropout:g} -> {dropout - DROPOUT_STEP:.2g}",
        )
    return moves


def combine(parts: list[Candidate], evidence: str) -> Candidate | None:
    """The moves together, when they set different knobs (None otherwise): fixes that each help often help more
    together, and confirming them as one costs one confirmation instead of several. Its cost is the product of
    theirs (more epochs of a wider model cost both)."""
    keys = [{o.partition("=")[0].strip() for o in c.overrides} for c in parts]
    if len(parts) < 2 or sum(map(len, keys)) != len(set().union(*keys)):
        return None
    return Candidate(
        tuple(o for c in parts for o in c.overrides),
        "combination",
        f"{' and '.join(c.label for c in parts)} each beat the incumbent in the first rung ({evidence})",
        math.prod(c.cost for c in parts),
    )


def propose(
    cfg: Config,
    problems: list[Problem],
    summary: dict[str, Any],
    lr_suggestion: tuple[float | None, str] | None,
    audit_issues: str | None,
    tried: set[tuple[str, ...]],
    limit: int,
) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The round's candidates (at most `limit`, in source order) and what was left out, with why."""
    moves = from_findings(problems) + far_from_usual(cfg)
    if lr_suggestion is not None:
        moves += from_lr_find(*lr_suggestion)
    if audit_issues:
        moves.append(
            Candidate(
                (f"data.exclude={audit_issues}",),
                "audit",
                "the audit flagged label errors, duplicates or leaks",
            )
        )
    extra, skipped = playbook(cfg, summary)
    moves += extra + neighbours(cfg)
    chosen: list[Candidate] = []
    seen: set[tuple[str, ...]] = set()
    for move in moves:
        if move.overrides in seen:  # offered by an earlier source: that one says why
            continue
        seen.add(move.overrides)
        if _is_noop(cfg, move.overrides):
            skipped.append({"move": move.label, "why": f"{move.source}: the config already has it"})
        elif move.overrides in tried:
            skipped.append({"move": move.label, "why": f"{move.source}: raced from this incumbent before"})
        elif len(chosen) >= limit:
            skipped.append(
                {"move": move.label, "why": f"{move.source}: beyond the {limit} candidates of a round"}
            )
        else:
            move.late = pays_late(cfg, move.overrides)
            chosen.append(move)
    return chosen, skipped
