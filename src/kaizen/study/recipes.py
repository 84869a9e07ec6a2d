"""Built-in studies: the experiments of the seed documents, as data.

A recipe is a question, the base setup that reproduces the seed's experiment on the bundled digits set (used
when no config is given; with `-c` the user's config is the base), and named variants, each a list of
overrides. The first variant is the baseline the others are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaizen.config import Config, valid_keys
from kaizen.errors import KaizenError
from kaizen.registry import did_you_mean
from kaizen.study.compare import Plan, Variant, make_plan

# Seed 003's sigmoid MLP: 784-40-20-10 (here 64-40-20-10), normal(0.01) weights, plain SGD lr 0.1, batch 100;
# 150 epochs of 13 steps on digits is about the seed's 2,000 iterations.
_SEED_003_MLP = (
    "model.preset=mlp",
    "model.hidden=[40,20]",
    "model.activation=sigmoid",
    "model.norm=none",
    "model.dropout=0",
    "init.weights=normal",
    "init.std=0.01",
    "init.bias=0",
    "optim.name=sgd",
    "optim.lr=0.1",
    "schedule.name=constant",
    "train.batch_size=100",
    "train.epochs=150",
)
# Every regulariser off, so the regularisation variants mean the same on any base config.
_NO_REGULARISER = ("reg.l1=0", "reg.l2=0", "reg.activation_sparsity=0", "model.dropout=0")
# Seed 004's ImageDataGenerator(rotation_range=8, width_shift_range=0.08, shear_range=0.3,
# height_shift_range=0.08, zoom_range=0.08).
_SEED_004_AUGMENT = {"rotation": 8, "width_shift": 0.08, "height_shift": 0.08, "shear": 0.3, "zoom": 0.08}


@dataclass(frozen=True)
class Recipe:
    """A built-in study. `variants` are (id, overrides); the first is the baseline. `requires` names config
    keys the recipe needs (it refuses to run until the schema has them)."""

    name: str
    seed: str
    question: str
    description: str
    base: tuple[str, ...]
    variants: tuple[tuple[str, tuple[str, ...]], ...]
    requires: tuple[str, ...] = ()
    missing_note: str = ""

    def available(self) -> bool:
        """True when every key the recipe needs exists in the config schema."""
        keys = set(valid_keys())
        return all(key in keys for key in self.requires)

    def check_available(self) -> None:
        """Raise a one-line KaizenError when the recipe cannot run with this kaizen."""
        missing = [key for key in self.requires if key not in set(valid_keys())]
        if missing:
            raise KaizenError(
                f"study '{self.name}' needs the config key(s) {', '.join(missing)}, which this kaizen does not "
                f"have yet: {self.missing_note}"
            )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="vanishing-gradients",
            seed="003",
            question="Does a sigmoid MLP with small normal(0.01) weights stall, and do ReLU or Xavier fix it?",
            description="seed 003's 4-layer sigmoid MLP, normal(0.01) weights, SGD lr 0.1, batch 100, ~2,000 steps",
            base=_SEED_003_MLP,
            variants=(
                ("sigmoid", ("model.activation=sigmoid", "init.weights=normal", "init.std=0.01")),
                ("relu", ("model.activation=relu", "init.weights=normal", "init.std=0.01")),
                ("sigmoid-xavier", ("model.activation=sigmoid", "init.weights=xavier_normal")),
            ),
        ),
        Recipe(
            name="initialization",
            seed="001, 003",
            question="Which weight initialisation lets a ReLU MLP learn: normal(0.01), Xavier, He or zeros?",
            description="seed 003's MLP with ReLU, SGD lr 0.1, batch 100, 150 epochs",
            base=(*_SEED_003_MLP, "model.activation=relu"),
            variants=(
                ("normal-0.01", ("init.weights=normal", "init.std=0.01")),
                ("xavier", ("init.weights=xavier_normal",)),
                ("he", ("init.weights=he_normal",)),
                ("zeros", ("init.weights=zeros",)),
            ),
        ),
        Recipe(
            name="optimizers",
            seed="001",
            question="Is Adam the strongest? SGD, momentum, AdaGrad, RMSProp and Adam, each at its usual rate",
            description="MLP 64-40-20-10 with ReLU, batch 32, 30 epochs, constant learning rate",
            base=(
                "model.preset=mlp",
                "model.hidden=[40,20]",
                "model.activation=relu",
                "model.norm=none",
                "model.dropout=0",
                "schedule.name=constant",
                "train.batch_size=32",
                "train.epochs=30",
            ),
            variants=(
                ("sgd", ("optim.name=sgd", "optim.lr=0.01")),
                ("momentum", ("optim.name=momentum", "optim.lr=0.01", "optim.momentum=0.9")),
                ("adagrad", ("optim.name=adagrad", "optim.lr=0.01")),
                ("rmsprop", ("optim.name=rmsprop", "optim.lr=0.001", "optim.momentum=0")),
                ("adam", ("optim.name=adam", "optim.lr=0.001")),
            ),
        ),
        Recipe(
            name="normalization",
            seed="000, 001, 004",
            question="Does normalisation help, and which kind? none, batch, layer and instance norm",
            description="seed 003's conv-relu-pool-affine CNN (conv_net), Adam + cosine, 10 epochs, no dropout",
            base=("model.preset=conv_net", "model.dropout=0", "train.epochs=10"),
            variants=(
                ("none", ("model.norm=none",)),
                ("batch", ("model.norm=batch",)),
                ("layer", ("model.norm=layer",)),
                ("instance", ("model.norm=instance",)),
            ),
        ),
        Recipe(
            name="regularization",
            seed="000, 001",
            question="Which regulariser narrows the train/validation gap: L1, L2, elastic net, dropout, sparsity?",
            description="a wide MLP (256, 256) on a quarter of the training set, Adam, 60 epochs: built to overfit",
            base=(
                "data.fraction=0.25",
                "model.preset=mlp",
                "model.hidden=[256,256]",
                "model.norm=none",
                "model.dropout=0",
                "schedule.name=constant",
                "train.epochs=60",
            ),
            variants=(
                ("none", _NO_REGULARISER),
                ("l1", (*_NO_REGULARISER, "reg.l1=1e-4")),
                ("l2", (*_NO_REGULARISER, "reg.l2=1e-3")),
                ("elastic-net", (*_NO_REGULARISER, "reg.l1=5e-5", "reg.l2=5e-4")),
                ("dropout", (*_NO_REGULARISER, "model.dropout=0.5")),
                ("sparsity", (*_NO_REGULARISER, "reg.activation_sparsity=1e-2")),
            ),
        ),
        Recipe(
            name="augmentation",
            seed="004",
            question="Does seed 004's augmentation (rotation 8°, shifts 0.08, shear 0.3, zoom 0.08) cut overfitting?",
            description="the default CNN without and with seed 004's ImageDataGenerator settings",
            base=("train.epochs=15",),
            variants=(
                ("none", tuple(f"augment.{key}=0" for key in _SEED_004_AUGMENT)),
                (
                    "seed-004",
                    tuple(f"augment.{key}={value}" for key, value in _SEED_004_AUGMENT.items()),
                ),
            ),
            requires=("augment",),
            missing_note="augmentation is not implemented yet (it runs once the config has an `augment` section)",
        ),
        Recipe(
            name="batch-size",
            seed="002",
            question="How does the mini-batch size change what a fixed number of epochs reaches?",
            description="seed 002's simple CNN (bias 0.1, dropout 0.2), Adam lr 1e-3, 10 epochs",
            base=(
                "model.preset=simple_cnn",
                "model.norm=none",
                "model.dropout=0.2",
                "init.bias=0.1",
                "schedule.name=constant",
                "train.epochs=10",
            ),
            variants=(
                ("batch-32", ("train.batch_size=32",)),
                ("batch-16", ("train.batch_size=16",)),
                ("batch-128", ("train.batch_size=128",)),
                ("batch-512", ("train.batch_size=512",)),
            ),
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """Return the recipe called `name`, or raise a KaizenError listing the recipes."""
    if name not in RECIPES:
        raise KaizenError(
            f"unknown study '{name}'{did_you_mean(name, list(RECIPES))}; valid: {', '.join(RECIPES)}"
        )
    return RECIPES[name]


def study_plan(
    name: str,
    base: Config | None = None,
    seeds: int = 3,
    metric: str = "test.acc",
    overrides: list[str] | None = None,
) -> Plan:
    """The Plan of a built-in study: on `base` if given, else on the recipe's own setup of the default data;
    `overrides` (e.g. `train.epochs=5`) apply to that base before the variants."""
    recipe = get_recipe(name)
    recipe.check_available()
    own_setup = base is None
    if own_setup:
        base = Config().override([*recipe.base, f"name={recipe.name}"])
    if overrides:
        base = base.override(overrides)
    variants = [Variant(variant_id, overrides) for variant_id, overrides in recipe.variants]
    return make_plan(
        base,
        variants,
        seeds,
        metric,
        kind="study",
        title=f"study: {recipe.name}",
        question=recipe.question,
        description=(recipe.description if own_setup else f"the given config ({base.run_name()})")
        + f" · seed document {recipe.seed}",
        extra={"study": recipe.name},
    )
