"""kaizen improve against Optuna TPE (median pruner) and random search at equal budget, and the start config.

For each data set, budget (multiples of one run of the start config) and repetition (its own seeds), the
benchmark runs `kaizen.improve(start, budget)`; the improve's ledger gives the budget in device-seconds of
training, and each search gets exactly that many seconds for its trials (the training seconds of each epoch
it ran, read from the trial's metrics.csv, the same count improve's ledger uses). A search starts no trial that
the last trial's seconds per epoch say cannot finish, and a trial that runs past the budget anyway (more epochs,
a smaller batch) is cut at the epoch that crosses it and cannot be the best, so a search spends at most one
epoch past its budget (before 2026-12-06 such trials ran to the end: up to 127% spent). The best trial by validation accuracy is then trained on the improve's three
seeds and scored on the test split; those confirmation runs are not charged to the search (improve pays for
its own full-length seeds from its budget, so this favours the searches). Start: the start config on the same
seeds (the improve's own start runs, scored once at its end).

Search space (the same knobs for both searches): optim.lr log-uniform 1e-4..1e-1, optim.weight_decay
log-uniform 1e-6..1e-2, model.dropout 0..0.5, train.batch_size 16|32|64|128, train.epochs E/2..2E,
augmentation strength 0..1 (times the kaggle preset: rotation 8°, shifts 0.08, shear 0.3, zoom 0.08; for
colour photos left-right flips too when above 0.5), width x0.5|1|2 (model.hidden of an MLP; other models
keep their width). Optuna: TPESampler(seed) + MedianPruner(5 startup trials, 1 warm-up epoch); random:
RandomSampler(seed + 1), no pruner.

    python benchmarks/improve.py                     # the full comparison: 5 data sets, 8x and 32x, 3 reps
    python benchmarks/improve.py --datasets digits,poor --budgets 8 --reps 1 --reduced

`--reduced` makes the start configs cheap enough for the whole table to fit a CPU: digits and mnist-10k as
MLPs (64 units, 20 epochs; 128 units, 10 epochs), the photos at 16 px; `poor` is always the full
`mnist_mlp_sigmoid.yaml` (28 epochs, about a second of training on one thread).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from common import CONFIGS, MNIST, machine

import kaizen
from kaizen.study import stats
from kaizen.track import rundir

DATASETS = ("digits", "mnist-10k", "photos", "poor", "poor-reg")


def start_config(name: str, reduced: bool, work: Path, mnist: Path = MNIST) -> kaizen.Config:
    """The starting config of a data set (one thread, CPU)."""
    common = ["train.threads=1", "train.device=cpu", f"log.runs_dir={work}/runs"]
    if name == "digits":
        cfg = kaizen.Config.load(CONFIGS / "digits_cnn.yaml")
        extra = ["model.preset=mlp", "model.hidden=[64]", "train.epochs=20"] if reduced else []
    elif name == "mnist-10k":
        cfg = kaizen.Config.load(CONFIGS / "mnist_simple_cnn.yaml")
        extra = [f"data.root={mnist}"] + (
            ["model.preset=mlp", "model.hidden=[128]", "train.epochs=10"] if reduced else []
        )
    elif name == "photos":
        from kaizen.data.samples import make_photo_folder

        root = make_photo_folder(work / "photos", per_class=100)
        cfg = kaizen.Config().override(
            [
                "data.name=folder",
                f"data.path={root}",
                f"data.cache={work}/cache",
                "data.image_size=32",
                "train.epochs=15",
            ]
        )
        extra = ["data.image_size=16"] if reduced else []
    elif name == "poor":
        cfg = kaizen.Config.load(CONFIGS / "mnist_mlp_sigmoid.yaml")
        extra = [f"data.root={mnist}"]  # the full config: one run is about a second on one CPU thread
    elif name == "poor-reg":  # a heavily regularised MLP on mnist-10k: passes kaizen check, underfits
        cfg = kaizen.Config.load(CONFIGS / "mnist_simple_cnn.yaml")
        extra = [f"data.root={mnist}", "model.preset=mlp", "model.hidden=[128]", "reg.l2=0.3"]
        extra += ["train.epochs=10"] if reduced else []
    else:
        raise SystemExit(f"unknown data set {name}; choose from {', '.join(DATASETS)}")
    return cfg.override([*extra, *common])


def suggest(trial: optuna.Trial, cfg: kaizen.Config, channels: int) -> list[str]:
    """One point of the documented search space, as overrides."""
    epochs = cfg.train.epochs
    strength = trial.suggest_float("augment", 0.0, 1.0)
    overrides = [
        f"optim.lr={trial.suggest_float('lr', 1e-4, 1e-1, log=True)}",
        f"optim.weight_decay={trial.suggest_float('weight_decay', 1e-6, 1e-2, log=True)}",
        f"model.dropout={trial.suggest_float('dropout', 0.0, 0.5)}",
        f"train.batch_size={trial.suggest_categorical('batch_size', [16, 32, 64, 128])}",
        f"train.epochs={trial.suggest_int('epochs', max(1, epochs // 2), 2 * epochs)}",
        f"augment.rotation={8 * strength}",
        f"augment.width_shift={0.08 * strength}",
        f"augment.height_shift={0.08 * strength}",
        f"augment.shear={0.3 * strength}",
        f"augment.zoom={0.08 * strength}",
    ]
    if channels == 3:
        overrides.append(f"augment.hflip={str(strength > 0.5).lower()}")
    width = trial.suggest_categorical("width", [0.5, 1.0, 2.0])
    if cfg.model.preset == "mlp":
        overrides.append(
            f"model.hidden=[{','.join(str(max(1, round(w * width))) for w in cfg.model.hidden)}]"
        )
    return overrides


def search(cfg: kaizen.Config, budget: float, sampler: str, seed: int, work: Path, channels: int) -> dict:
    """A search of `budget` training seconds; returns the best overrides, trials and seconds spent."""
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import Pruned, fit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        )
    else:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    spent, best, trials, curve = 0.0, (-1.0, []), 0, []
    per_epoch = None
    while spent < budget:
        trial = study.ask()
        overrides = suggest(trial, cfg, channels)
        trial_cfg = cfg.override(
            [*overrides, "train.score_test=false", "log.plots=false", "log.tensorboard=false"]
        )
        if per_epoch is not None and spent + per_epoch * trial_cfg.train.epochs > budget:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break  # the next trial could not be paid for in full
        path = work / f"{sampler}-{trial.number:04d}"
        (path / "checkpoints").mkdir(parents=True)

        started = time.perf_counter()

        def on_epoch(epoch: int, metrics: dict, trial=trial, started=started, left=budget - spent) -> None:
            trial.report(metrics["val_acc"], epoch)
            # wall seconds since the trial began bound its training seconds from above: a trial about to run
            # past the budget is cut like a pruned one (it cannot be the best), so a search spends at most one
            # epoch past its budget
            if time.perf_counter() - started >= left:
                raise Pruned("budget")
            if trial.should_prune():
                raise Pruned("pruned")

        pruned = False
        try:
            fit(trial_cfg, run_dir=path, reporter=Reporter(enabled=False), on_epoch=on_epoch)
        except Pruned:
            pruned = True
        rows = [r for r in rundir.read_metrics(path / "metrics.csv") if r["split"] == "train"]
        seconds = sum(float(r["seconds"]) for r in rows)
        spent += seconds
        trials += 1
        if rows:
            per_epoch = seconds / len(rows)
        vals = [float(r["acc"]) for r in rundir.read_metrics(path / "metrics.csv") if r["split"] == "val"]
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            summary = rundir.read_json(path / "summary.json")
            value = (
                summary["best"]["val_acc"]
                if summary.get("checkpoint") == "best.pt"
                else summary["final"]["val_acc"]
            )
            study.tell(trial, value)
            if value > best[0]:
                best = (value, overrides)
        curve.append((round(spent, 3), best[0] if best[0] >= 0 else (max(vals) if vals else None)))
    return {"best_val": best[0], "overrides": best[1], "trials": trials, "spent": spent, "curve": curve}


def test_on_seeds(cfg: kaizen.Config, overrides: list[str], seeds: list[int]) -> list[float]:
    """Test accuracy of start + overrides trained on each seed."""
    return [
        kaizen.train(
            cfg.override([*overrides, f"train.seed={seed}", "log.plots=false", "log.tensorboard=false"])
        ).summary["test"]["acc"]
        for seed in seeds
    ]


def improve_curve(journal: dict) -> list[tuple[float, float]]:
    """Best full-length validation accuracy so far against the improve's budget spent."""
    best, curve = None, []
    for point in journal["points"]:
        if point["kind"] == "full" and point["val_acc"] is not None:
            best = point["val_acc"] if best is None else max(best, point["val_acc"])
        if best is not None:
            curve.append((point["spent"], best))
    return curve


def plot_curves(results: list[dict], path: Path) -> None:
    """Best-so-far validation accuracy against budget spent (as a share of the budget): one panel per data set
    and budget, one line per method and repetition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys((r["dataset"], r["budget"]) for r in results if "improve_curve" in r))
    if not cells:
        return
    columns = min(4, len(cells))
    rows = -(-len(cells) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    colours = {"improve_curve": "C0", "tpe_curve": "C1", "random_curve": "C2"}
    names = {"improve_curve": "improve", "tpe_curve": "Optuna TPE", "random_curve": "random"}
    for axis, (name, budget) in zip(axes.flat, cells):
        for row in (r for r in results if (r["dataset"], r["budget"]) == (name, budget)):
            total = row["budget_seconds"] or 1.0
            for key, colour in colours.items():
                points = [(x, y) for x, y in row.get(key, []) if y is not None]
                if points:
                    axis.step(
                        [100 * x / total for x, _ in points],
                        [100 * y for _, y in points],
                        where="post",
                        color=colour,
                        alpha=0.8,
                        label=names[key] if row["rep"] == 0 else None,
                    )
        axis.set_title(f"{name}, {budget:g}x one start run", fontsize=9)
        axis.set_xlabel("budget spent (%)")
        axis.set_ylabel("best validation accuracy so far (%)")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(cells) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def channels_of(work: Path, seed: int) -> int:
    """The image channels, from the improve's first run of the start config."""
    summary = work / "improve" / "full" / "runs" / "start" / f"seed{seed}" / "summary.json"
    return json.loads(summary.read_text())["data"]["input_shape"][0]


def refused_row(cfg: kaizen.Config, name: str, budget: float, rep: int, error: str) -> dict:
    """When improve refuses (its check fails): the start measured directly, the searches given budget x one run."""
    seeds = [cfg.train.seed + k for k in range(3)]
    runs = [
        kaizen.train(cfg.override([f"train.seed={seed}", "log.plots=false", "log.tensorboard=false"]))
        for seed in seeds
    ]
    one_run = runs[0].summary["timings"]["train_seconds"]
    return {
        "dataset": name,
        "budget": budget,
        "rep": rep,
        "refused": error,
        "budget_seconds": budget * one_run,
        "overshoot": 0.0,
        "start": [run.summary["test"]["acc"] for run in runs],
        "improve": [
            run.summary["test"]["acc"] for run in runs
        ],  # it returns nothing: the user keeps the start
        "improve_overrides": [],
        "seeds": seeds,
        "channels": runs[0].summary["data"]["input_shape"][0],
    }


def summarise(values: list[float]) -> str:
    spread = stats.describe(values, bounds=(0.0, 1.0))
    if len(values) < 2:
        return f"{100 * spread.mean:.2f}"
    return f"{100 * spread.mean:.2f} [{100 * spread.ci_low:.2f}, {100 * spread.ci_high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--budgets", default="8,32", help="multiples of one start run, comma separated")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--reduced", action="store_true", help="shorter start configs that fit a CPU")
    parser.add_argument(
        "--mnist", type=Path, default=MNIST, help="folder of the MNIST IDX files (t10k: mnist-10k)"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="draw best-so-far accuracy against budget here"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the work here (default: a temporary folder)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="print the table of earlier outputs of this script",
    )
    args = parser.parse_args()
    if args.merge:
        merge_outputs(args.merge, args.plot)
        return
    print(machine())
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        for name in args.datasets.split(","):
            for budget in [float(b) for b in args.budgets.split(",")]:
                for rep in range(args.reps):
                    work = root / f"{name}-{budget:g}x-rep{rep}"
                    work.mkdir(parents=True, exist_ok=True)
                    cfg = start_config(name, args.reduced, work, args.mnist).override(
                        [f"train.seed={100 * rep}"]
                    )
                    began = time.perf_counter()
                    try:
                        journal = kaizen.improve(
                            cfg, budget=f"{budget:g}x", out_dir=work / "improve", max_candidates=4
                        )
                    except kaizen.KaizenError as error:  # kaizen check failed: improve stops, no budget spent
                        row = refused_row(cfg, name, budget, rep, str(error))
                        journal = None
                    if journal is not None:
                        final = journal["final"]
                        row = {
                            "dataset": name,
                            "budget": budget,
                            "rep": rep,
                            "budget_seconds": journal["ledger"]["total_seconds"],
                            "improve_spent": journal["ledger"]["spent_seconds"],
                            "overshoot": journal["ledger"]["overshoot"],
                            "start": list(final["test_start"]["by_seed"].values()),
                            "improve": list(final["test_final"]["by_seed"].values()),
                            "improve_overrides": final["overrides"],
                            "improve_wall": time.perf_counter() - began,
                            "seeds": journal["seeds"],
                            "improve_curve": improve_curve(journal),
                        }
                    seeds = row["seeds"]
                    channels = row.get("channels") or channels_of(work, seeds[0])
                    for sampler in ("tpe", "random"):
                        found = search(
                            cfg,
                            row["budget_seconds"],
                            sampler,
                            100 * rep + (sampler == "random"),  # TPE's start-up trials are random too
                            work / sampler,
                            channels,
                        )
                        row[sampler] = (
                            test_on_seeds(cfg, found["overrides"], seeds)
                            if found["overrides"]
                            else row["start"]
                        )
                        row[f"{sampler}_trials"] = found["trials"]
                        row[f"{sampler}_curve"] = found["curve"]
                        row[f"{sampler}_spent"] = found["spent"]
                    results.append(row)
                    print(json.dumps(row), flush=True)
    if args.plot is not None:
        plot_curves(results, args.plot)
    print_table(results)


def print_table(results: list[dict]) -> None:
    """The markdown table: per data set and budget, test accuracy (mean [95% interval]) of each method."""
    print(
        "\n| data set | budget | reps | start | improve | Optuna TPE + median | random | improve adopted | "
        "improve's overshoot | searches' most spent |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, budget in dict.fromkeys((r["dataset"], r["budget"]) for r in results):
        rows = [r for r in results if r["dataset"] == name and r["budget"] == budget]

        def mean_of(key: str, rows: list[dict] = rows) -> list[float]:
            """Each repetition's mean over its seeds (the improve's three: a second look may have scored the
            start and the final config on two more); with one repetition, its seeds' values."""
            values = [r[key][: len(r["seeds"])] for r in rows]
            return values[0] if len(rows) == 1 else [statistics.mean(v) for v in values]

        adopted = "; ".join(
            "refused: " + r["refused"][:90]
            if "refused" in r
            else " ".join(r["improve_overrides"]) or "(start)"
            for r in rows
        )
        over = max(r["overshoot"] for r in rows)
        # the searches stop starting trials once their seconds are spent, but a trial longer than the last
        # one (more epochs, a smaller batch) can end past the budget: their largest share, for fairness
        searched = max(r[f"{k}_spent"] / r["budget_seconds"] for r in rows for k in ("tpe", "random"))
        print(
            f"| {name} | {budget:g}x | {len(rows)} | {summarise(mean_of('start'))} | {summarise(mean_of('improve'))} | "
            f"{summarise(mean_of('tpe'))} | {summarise(mean_of('random'))} | {adopted} | {100 * over:.1f}% | "
            f"{100 * searched:.0f}% |"
        )


def merge_outputs(paths: list[Path], plot: Path | None) -> None:
    """The table (and picture) of earlier runs of this script, from the JSON rows they printed."""
    results = [
        json.loads(line) for path in paths for line in path.read_text().splitlines() if line.startswith("{")
    ]
    if plot is not None:
        plot_curves(results, plot)
    print_table(results)


if __name__ == "__main__":
    main()
