"""Keras 3 `fit` against kaizen on seed 004's CNN: the same layers, data, batch size and optimiser.

Keras runs on its PyTorch backend (KERAS_BACKEND=torch unless set), so both sides use the same kernels and
threads; what differs is the training loop around them. Prints seconds per training epoch (after a warm-up
epoch) and the ratio. Keras is not a kaizen dependency: `pip install keras` to run this.

    python benchmarks/keras_fit.py [--epochs 3] [--root ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

from common import CONFIGS, MNIST, dataset_overrides, machine, train, train_seconds  # noqa: E402

import kaizen  # noqa: E402
from kaizen.data import load_data  # noqa: E402


def keras_model(keras, input_shape: tuple[int, int, int], classes: int, dropout: float):
    """Seed 004's network as the seed wrote it in Keras: BatchNormalization after each ReLU (and pool).

    The norms' running statistics use PyTorch's momentum (Keras 0.9 = torch 0.1), as kaizen's do; with Keras'
    own 0.99 a run of a few epochs is still evaluated with statistics close to their initial values.
    """
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(64, 3, activation="relu"),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.BatchNormalization(momentum=0.9),
            layers.Dense(512, activation="relu"),
            layers.BatchNormalization(momentum=0.9),
            layers.Dropout(dropout),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def keras_epochs(keras, cfg: kaizen.Config, epochs: int) -> tuple[list[float], float]:
    """Seconds per epoch of model.fit, and the test accuracy it ends with."""
    data = load_data(cfg.data, "cpu")
    to_nhwc = (0, 2, 3, 1)  # Keras' default image layout is channels-last
    x_train, x_test = data.x_train.permute(to_nhwc).numpy(), data.x_test.permute(to_nhwc).numpy()
    keras.utils.set_random_seed(cfg.train.seed)
    model = keras_model(keras, x_train.shape[1:], data.num_classes, cfg.model.dropout)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.optim.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.began)

    model.fit(
        x_train,
        data.y_train.numpy(),
        batch_size=cfg.train.batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=[Timer()],
    )
    _, accuracy = model.evaluate(x_test, data.y_test.numpy(), verbose=0)
    return times, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first warms up)")
    parser.add_argument("--root", default=str(MNIST), help="folder with MNIST IDX files")
    args = parser.parse_args()
    try:
        import keras
    except ImportError:
        sys.exit("keras is not installed: pip install keras (it runs on the PyTorch backend here)")

    cfg = kaizen.Config.load(CONFIGS / "kaggle_cnn.yaml").override(
        [*dataset_overrides(args.root), "train.device=cpu"]
    )
    n_train = len(load_data(cfg.data, "cpu").y_train)
    theirs, keras_acc = keras_epochs(keras, cfg, args.epochs)
    rows = [("Keras fit (fp32)", theirs, keras_acc)]
    for name, precision in (("kaizen fp32", "false"), ("kaizen (defaults)", "auto")):
        summary, metrics = train(
            cfg, [f"train.epochs={args.epochs}", "schedule.name=constant", f"train.bf16={precision}"]
        )
        bf16 = " bf16" if summary["speed"]["bf16"] else ""
        rows.append((name + bf16, train_seconds(metrics), summary["test"]["acc"]))
    print(f"kaggle_cnn on {cfg.data.name} ({n_train:,} training images), batch {cfg.train.batch_size}, Adam")
    print(f"machine: {machine()}; keras {keras.__version__} on backend {keras.backend.backend()}")
    print(
        f"{'loop':<26}{'images/s':>10}{'s/epoch':>9}{'test acc':>10}{'vs Keras':>10}  ({args.epochs} epochs)"
    )
    keras_seconds = statistics.median(theirs[1:] or theirs)
    for name, times, acc in rows:
        seconds = statistics.median(times[1:] or times)
        print(
            f"{name:<26}{n_train / seconds:>10,.0f}{seconds:>9.2f}{acc:>10.2%}{keras_seconds / seconds:>9.2f}x"
        )


if __name__ == "__main__":
    main()
