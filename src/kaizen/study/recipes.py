"""Built-in studies: the experiments of the seed documents, as data.

A recipe is a question, the metric that answers it, the base setup that reproduces the seed's experiment (used
when no config is given; with `-c` the user's config is the base), and named variants, each a list of
overrides; the first variant is the baseline the others are tested against. The own setup runs on mnist-10k
when its IDX files are under data.root (or data.root/mnist): digits' 359 test images cannot resolve
differences of a point or two; without them it falls back to digits and says so. A recipe comparing techniques
that need their own learning rate tunes it per variant on the validation split (`tune`, `trials`) before the
seeds run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaizen.config import Config
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
    """A built-in study. `variants` are (id, overrides); the first is the baseline. `metric` answers the
    question; `mnist` are the overrides (epochs for about the same number of steps) of the own setup on
    mnist-10k, None to stay on digits; `tune` a search space tuned per variant with `trials` trials."""

    name: str
    seed: str
    question: str
    description: str
    base: tuple[str, ...]
    variants: tuple[tuple[str, tuple[str, ...]], ...]
    metric: str = "test.acc"
    mnist: tuple[str, ...] | None = ()
    tune: tuple[str, ...] = ()
    trials: int = 0


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
            mnist=("train.epochs=28",),  # 72 steps an epoch: about the seed's 2,000 iterations
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
            mnist=("train.epochs=28",),
        ),
        Recipe(
            name="optimizers",
            seed="001",
            question="Is Adam the strongest? SGD, momentum, AdaGrad, RMSProp and Adam, each at its own tuned rate",
            description="MLP (40, 20) with ReLU, batch 32, 30 epochs, constant learning rate tuned per optimiser "
            "(8 trials of log(1e-4, 1) on the validation split; the usual rates with --trials 0)",
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
            mnist=("train.epochs=5",),  # 225 steps an epoch: about the 1,100 steps of 30 epochs on digits
            tune=("optim.lr=log(1e-4,1)",),
            trials=8,
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
            mnist=("train.epochs=3",),
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
            metric="gap",
            mnist=("train.epochs=30",),
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
            metric="gap",
            mnist=("train.epochs=4",),
        ),
        Recipe(
            name="batch-size",
            seed="002",
            question="How does the mini-batch size change what a fixed number of epochs reaches?",
            description="seed 002's simple CNN (bias 0.1, dropout 0.2), Adam, 10 epochs, the learning rate tuned "
            "per batch size (5 trials of log(1e-4, 1e-1) on the validation split; lr 1e-3 with --trials 0)",
            base=(
                "model.preset=simple_cnn",
                "model.norm=none",
                "model.dropout=0.2",
                "init.bias=0.1",
                "optim.name=adam",
                "optim.lr=1e-3",
                "schedule.name=constant",
                "train.epochs=10",
            ),
            variants=(
                ("batch-32", ("train.batch_size=32",)),
                ("batch-16", ("train.batch_size=16",)),
                ("batch-128", ("train.batch_size=128",)),
                ("batch-512", ("train.batch_size=512",)),
            ),
            mnist=("train.epochs=3",),
            tune=("optim.lr=log(1e-4,1e-1)",),
            trials=5,
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


def mnist_root(cfg: Config) -> Path | None:
    """The folder under data.root holding the mnist t10k IDX files (mnist-10k), or None."""
    root = Path(cfg.data.root)
    for folder in (root / "mnist", root):
        if any((folder / f"t10k-images-idx3-ubyte{suffix}").is_file() for suffix in ("", ".gz")):
            return folder
    return None


def study_plan(
    name: str,
    base: Config | None = None,
    seeds: int = 3,
    metric: str | None = None,
    overrides: list[str] | None = None,
    split_seeds: int = 0,
) -> Plan:
    """The Plan of a built-in study: on `base` if given, else on the recipe's own setup (mnist-10k when its
    files are under data.root, else digits); `overrides` (e.g. `train.epochs=5`) apply to that base before
    the variants; `metric` None is the recipe's."""
    recipe = get_recipe(name)
    own_setup = base is None
    overrides = list(overrides or [])
    data_note = ""
    if own_setup:
        base = Config().override([*recipe.base, f"name={recipe.name}", *overrides])
        chose_data = any(item.strip().startswith("data.name=") for item in overrides)
        if recipe.mnist is not None and not chose_data:
            if mnist_root(base) is not None:
                base = Config().override(
                    [*recipe.base, "data.name=mnist", *recipe.mnist, f"name={recipe.name}"]
                )
                data_note = " · on mnist-10k (8,000 train / 2,000 test images)"
            else:
                data_note = (
                    f" · on digits (359 test images): no mnist IDX files under data.root "
                    f"'{base.data.root}' (set data.root to a folder with them for mnist-10k)"
                )
    if overrides:
        base = base.override(overrides)
    variants = [Variant(variant_id, variant_overrides) for variant_id, variant_overrides in recipe.variants]
    return make_plan(
        base,
        variants,
        seeds,
        metric or recipe.metric,
        split_seeds=split_seeds,
        kind="study",
        title=f"study: {recipe.name}",
        question=recipe.question,
        description=(recipe.description if own_setup else f"the given config ({base.run_name()})")
        + f" · seed document {recipe.seed}{data_note}",
        extra={"study": recipe.name},
    )
