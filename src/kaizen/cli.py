"""The `kaizen` command: thin typer commands that parse arguments and call the library.

Every KaizenError becomes one line on stderr and exit code 2; nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kaizen.config import Config
from kaizen.errors import KaizenError, KaizenWarning, one_line

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="kaizen: train image classifiers, see why they work, prove which technique helps.",
)


def _version(show: bool) -> None:
    if show:
        from kaizen.version import __version__

        print(f"kaizen {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print kaizen's version.")
    ] = False,
) -> None:
    """kaizen: train image classifiers, see why they work, prove which technique helps."""


config_app = typer.Typer(no_args_is_help=True, help="Show configs.")
app.add_typer(config_app, name="config")

out = Console(emoji=False)  # a path or a value holding :fire: is text, not an emoji
err = Console(stderr=True, emoji=False)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default: the digits CNN).")
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a key: --set optim.lr=3e-3 (repeatable).")
]


def load_config(config: Path | None, overrides: list[str] | None) -> Config:
    """The config of a command: the file (or the default), with overrides applied."""
    cfg = Config.load(config) if config is not None else Config()
    return cfg.override(overrides) if overrides else cfg


@app.command()
def train(
    config: ConfigOption = None,
    overrides: SetOption = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run from its last checkpoint.")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; print only the run path.")
    ] = False,
    devices: Annotated[
        int | None,
        typer.Option(help="Data-parallel: train on N GPUs (or N CPU processes), one process each."),
    ] = None,
    into: Annotated[Path | None, typer.Option(hidden=True, help="The run directory (set by --devices).")] = None,
) -> None:
    """Train a model and write a run directory."""
    from kaizen.run import load_run
    from kaizen.track.progress import Reporter
    from kaizen.training.session import run_session

    resuming = resume is not None and config is None  # a resume with --config is refused by run_session
    cfg = None if resuming else load_config(config, None if resume is not None else overrides)
    show = not quiet and (cfg is None or cfg.log.progress)
    try:
        run_dir = run_session(
            cfg,
            resume=resume,
            overrides=overrides if resume is not None else None,
            devices=devices,
            reporter=Reporter(enabled=show, console=err),
            run_dir=into,
            quiet=quiet,
        )
    except KeyboardInterrupt as stop:  # what was kept, and how to continue
        if os.environ.get("RANK", "0") == "0":
            err.print(str(stop) or "interrupted", highlight=False, soft_wrap=True, markup=False)
        raise
    if run_dir is None or (devices or 1) > 1:  # data-parallel: the processes' rank 0 has reported
        return
    if quiet:
        print(run_dir)
        return
    summary = load_run(run_dir).summary
    best = summary["best"]
    val = f"val acc {best['val_acc']:.2%} (epoch {summary['best_epoch']}) · " if "val_acc" in best else ""
    out.print(
        f"[bold green]done[/] {summary['epochs_completed']} epochs in {summary['timings']['train_seconds']:.1f}s · "
        f"{val}[bold]test acc {summary['test']['acc']:.2%}[/] ({summary['checkpoint']})"
    )
    out.print(f"run: {run_dir}    next: kaizen eval {run_dir}", soft_wrap=True, markup=False)


@config_app.command("show")
def config_show(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """Print the fully resolved config (YAML) with every default filled in."""
    print(load_config(config, overrides).to_yaml(), end="")


@app.command()
def summary(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """Print the model's layer table: output shapes, parameters, MACs per sample."""
    from kaizen.data import data_shape
    from kaizen.nn import build_model
    from kaizen.nn.summary import render_summary, summarize

    cfg = load_config(config, overrides)
    if cfg.model.backbone is not None:  # its image size, as training resolves it
        from kaizen.nn.backbone import resolve

        cfg = resolve(cfg)
    input_shape, num_classes = data_shape(cfg.data)
    model = build_model(cfg.model, cfg.init, input_shape, num_classes)
    shape = "×".join(str(size) for size in input_shape)
    out.print(f"{cfg.model.preset or cfg.model.backbone or 'layer list'} · input {shape} · {num_classes} classes · {cfg.data.name}")
    out.print(render_summary(summarize(model, input_shape)))


@app.command("data")
def data_(
    config: ConfigOption = None,
    overrides: SetOption = None,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="PNG of a few training examples per class, as resized.")
    ] = None,
) -> None:
    """Show what a run would see of its data, without training: classes, counts, sizes, cache, skipped files."""
    from kaizen.data.report import describe, render
    from kaizen.track.plots import plot_data_grid
    from kaizen.training import estimate
    from kaizen.training.loop import resolve_device

    cfg = load_config(config, overrides)
    device = resolve_device(cfg.train.device)
    for line in render(describe(cfg.data, device.type)):
        print(line)
    try:
        estimate.check(cfg, device)
    except KaizenError as error:  # what a run would meet: said here, without refusing to describe the data
        err.print(f"[yellow]warning:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    if output is not None:
        plot_data_grid(cfg.data, output)
        out.print(f"wrote {output}", markup=False)


DATA_LOCATIONS = ("data.path", "data.test_path", "data.root", "data.cache")
RelocateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Where the run's data is now, if it moved: --set data.path=DIR (data.test_path, "
        "data.root, data.cache too)."
    ),
]


def _relocated(run, overrides: list[str] | None):
    """The run with its data found where `overrides` say (only the data's location may change)."""
    import dataclasses

    for assignment in overrides or []:
        if assignment.partition("=")[0].strip() not in DATA_LOCATIONS:
            raise KaizenError(
                f"--set {assignment}: a trained run keeps its config; --set here only says where its data is "
                f"now ({', '.join(DATA_LOCATIONS)})"
            )
    return dataclasses.replace(run, config=run.config.override(overrides)) if overrides else run


@app.command("eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    tta: Annotated[
        int, typer.Option(help="Test-time augmentation: average over this many augmented copies.")
    ] = 0,
    overrides: RelocateOption = None,
) -> None:
    """Evaluate a run: accuracy, loss, per-class precision/recall/F1, confusion matrix, worst mistakes."""
    from kaizen import load_run
    from kaizen.evaluate import headline, mistake_files, render_evaluation
    from kaizen.inference import evaluate_run

    if split not in ("test", "val", "train"):
        raise KaizenError(f"--split must be test, val or train, not '{split}'")
    result, paths = evaluate_run(_relocated(load_run(run), overrides), split, tta)
    out.print(f"[bold]{headline(result, split)}[/]")
    out.print(render_evaluation(result))
    mistakes = mistake_files(result)
    if mistakes:
        out.print("worst mistakes:", *mistakes, sep="\n  ", highlight=False, soft_wrap=True, markup=False)
    for path in paths:
        out.print(f"wrote {path}", markup=False)


@app.command()
def predict(
    runs: Annotated[
        list[Path], typer.Argument(help="One run, or several to ensemble (probabilities averaged).")
    ],
    input: Annotated[
        list[Path],
        typer.Option(
            "--input", "-i", help="Kaggle CSV, NPZ (x) or IDX file; or image files and folders (repeat --input)."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV to write (else printed to the terminal).")
    ] = None,
    tta: Annotated[
        int, typer.Option(help="Test-time augmentation: average over this many augmented copies.")
    ] = 0,
    overrides: RelocateOption = None,
) -> None:
    """Predict the labels of images (Kaggle `ImageId,Label` for CSV input, `path,label,probability` for images)."""
    from kaizen import load_run
    from kaizen.inference import predict_file

    report = predict_file([_relocated(load_run(path), overrides) for path in runs], input, output, tta)
    if output is None:
        print(report["text"], end="")
        return
    models = "1 model" if report["runs"] == 1 else f"an ensemble of {report['runs']} models"
    out.print(f"predicted {report['images']:,} images with {models} -> {report['out']}", markup=False)


@app.command("augment-preview")
def augment_preview(
    config: ConfigOption = None,
    overrides: SetOption = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("augment-preview.png"),
    images: Annotated[int, typer.Option(help="Training images to show.")] = 8,
    copies: Annotated[int, typer.Option(help="Augmented copies of each.")] = 6,
) -> None:
    """Draw training images beside augmented copies, as the training loop sees them."""
    from kaizen.data.augment import preview
    from kaizen.track.plots import plot_augment_preview

    cfg = load_config(config, overrides)
    plot_augment_preview(preview(cfg, images, copies), output)
    out.print(f"wrote {output}", markup=False)


SeedsOption = Annotated[
    int, typer.Option("--seeds", help="Runs per variant (train.seed = base seed + 0..N-1).")
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        help="Worker processes (default: one per core, or 4 per GPU when the runs train on CUDA); each run "
        "trains with train.threads threads (1 when unset). With --backend ray: runs sharing one GPU.",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help='Where runs execute: local (worker processes) or ray (needs pip install "kaizen\\[ray]").',
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="With --backend ray: the cluster's head, host:port (default: start a local Ray)."
    ),
]
MetricOption = Annotated[
    str, typer.Option(help="summary.json value to compare: test.acc, best.val_loss, ...")
]
StudySeedsOption = Annotated[
    str,
    typer.Option(
        "--seeds",
        help="Runs per variant (train.seed = base seed + 0..N-1), or auto[:MAX]: add seeds in rounds until "
        "every variant separates from the baseline (MAX default 10).",
    ),
]
SplitSeedsOption = Annotated[
    int,
    typer.Option(
        "--split-seeds", help="Also vary the data split (data.split_seed) over N seeds; 0: one split."
    ),
]
CorrectionOption = Annotated[
    str | None,
    typer.Option(help="Multiple-comparison correction of the p-values: holm (default), bonferroni or none."),
]
IntervalOption = Annotated[
    str | None, typer.Option(help="95% intervals: t (default) or bootstrap (percentile, over seeds).")
]
TuneOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tune",
        help="Tune a nuisance parameter per variant on the validation split first: KEY=SPACE as in kaizen tune, "
        "e.g. 'optim.lr=log(1e-4,1)' (repeatable).",
    ),
]
TrialsOption = Annotated[
    int | None,
    typer.Option("--trials", help="Trials per variant for --tune (a recipe's own budget by default)."),
]


def _execute_study(
    plan,
    out_dir: Path,
    workers: int | None,
    backend: str = "local",
    address: str | None = None,
    correction: str | None = None,
    interval: str | None = None,
    most_seeds: int | None = None,
    tune=None,
) -> None:
    """Run a study plan (kaizen.study.run_study), a line on stderr per run, then print the results."""
    from kaizen.study import run_study

    def say(line: str, alert: bool = False) -> None:
        err.print(line, style="red" if alert else None, highlight=False, soft_wrap=True, markup=False)

    _, report = run_study(
        plan, out_dir, workers, backend, address, correction, interval, most_seeds, tune, say=say
    )
    _print_results(report, out_dir)


def _print_results(report, out_dir: Path) -> None:
    """The results table, each variant's first error, the answer and where the report is."""
    from kaizen.study.report import headline, render_table

    out.print(render_table(report.results, out.width))
    for variant in report.results.variants:
        if variant.errors:
            out.print(
                f"[red]{escape(variant.id)}[/]: {escape(str(variant.errors[0]))}", highlight=False, soft_wrap=True
            )
    if report.curve is not None:
        out.print(f"[bold]{report.curve.reading}[/]", highlight=False, soft_wrap=True)
    for line in headline(report.results):
        out.print(line, highlight=False, soft_wrap=True, markup=False)
    out.print(f"report: {out_dir / 'report.html'}  (also report.md, results.csv)", soft_wrap=True, markup=False)


def _study_options(seeds: str, split_seeds: int, correction: str | None, tune: list[str] | None, trials: int):
    """Parse --seeds, check a verdict request against it, and build the tuning spec (None: no tuning)."""
    from kaizen.study import TuneSpec, parse_seeds, stats
    from kaizen.study.session import check_verdict_request

    if correction is not None and correction not in stats.CORRECTIONS:  # its name first, then what it asks for
        from kaizen.registry import did_you_mean

        raise KaizenError(
            f"--correction: unknown value '{correction}'{did_you_mean(correction, list(stats.CORRECTIONS))}; "
            f"valid: {', '.join(stats.CORRECTIONS)}"
        )
    parsed = parse_seeds(seeds)
    check_verdict_request(parsed, split_seeds, correction)
    spec = TuneSpec(tuple(tune), trials) if tune and trials else None
    return parsed, spec


@app.command()
def compare(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Study directory (re-run to resume).")],
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary", help="key=value1,value2 (repeatable); a list value in brackets: \\[32],\\[16,8]."
        ),
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    mode: Annotated[
        str, typer.Option(help="grid: every combination; one-at-a-time: each value vs the base.")
    ] = "grid",
    seeds: StudySeedsOption = "3",
    split_seeds: SplitSeedsOption = 0,
    workers: WorkersOption = None,
    metric: MetricOption = "test.acc",
    correction: CorrectionOption = None,
    interval: IntervalOption = None,
    tune: TuneOption = None,
    trials: TrialsOption = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Compare variants × seeds: mean ± std, 95% CI, corrected tests against the baseline, HTML report."""
    from kaizen.study import compare_plan
    from kaizen.study.compare import parse_vary
    from kaizen.study.session import check_tune

    parsed, spec = _study_options(seeds, split_seeds, correction, tune, 10 if trials is None else trials)
    plan = compare_plan(load_config(config, overrides), vary or [], mode, parsed.count, metric, split_seeds)
    if spec is not None:
        check_tune(plan, spec, [parse_vary(text)[0] for text in vary or []])
    _execute_study(plan, out_dir, workers, backend, address, correction, interval, parsed.most, spec)


@app.command()
def study(
    name: Annotated[str | None, typer.Argument(help="A built-in study (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="Describe the built-in studies.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Run on this config instead of the study's own setup."),
    ] = None,
    overrides: SetOption = None,
    seeds: StudySeedsOption = "3",
    split_seeds: SplitSeedsOption = 0,
    workers: WorkersOption = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Default: studies/<name>.")] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="summary.json value to compare (default: the one that answers the question)."),
    ] = None,
    correction: CorrectionOption = None,
    interval: IntervalOption = None,
    tune: TuneOption = None,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            help="Trials per variant for tuning (the recipe's own budget by default; 0: no tuning).",
        ),
    ] = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Reproduce a seed experiment (vanishing-gradients, optimizers, ...) with statistics and a report."""
    from kaizen.study import RECIPES, get_recipe, study_plan
    from kaizen.study.session import check_tune

    if list_:
        for recipe in RECIPES.values():
            variants = ", ".join(variant_id for variant_id, _ in recipe.variants)
            tuned = (
                f" · tunes {', '.join(recipe.tune)} ({recipe.trials} trials a variant)" if recipe.tune else ""
            )
            out.print(
                f"[bold]{recipe.name}[/] (seed {recipe.seed}) · metric {recipe.metric}", highlight=False
            )
            out.print(f"    {recipe.question}", highlight=False, soft_wrap=True)
            out.print(
                f"    variants: {variants} · setup: {recipe.description}{tuned}",
                highlight=False,
                soft_wrap=True,
            )
        return
    if name is None:
        raise KaizenError("give a study name (kaizen study --list shows them)")
    recipe = get_recipe(name)
    space = tune or list(recipe.tune)
    parsed, spec = _study_options(
        seeds, split_seeds, correction, space, recipe.trials if trials is None else trials
    )
    base = Config.load(config) if config is not None else None
    plan = study_plan(name, base, parsed.count, metric, overrides, split_seeds)
    if spec is not None:
        check_tune(plan, spec, [])
    suffix = f"-{config.stem}" if config is not None else ""
    out_dir = out_dir or Path("studies") / f"{name}{suffix}"
    _execute_study(plan, out_dir, workers, backend, address, correction, interval, parsed.most, spec)


@app.command()
def datacurve(
    config: ConfigOption = None,
    overrides: SetOption = None,
    fractions: Annotated[
        str, typer.Option(help="Training-set fractions, comma-separated.")
    ] = "0.1,0.25,0.5,1",
    seeds: SeedsOption = 3,
    workers: WorkersOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Default: studies/datacurve-<config>.")
    ] = None,
    metric: MetricOption = "test.acc",
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Accuracy and train/validation gap against training-set size: will more data help?"""
    from kaizen.study import datacurve_plan, parse_fractions

    plan = datacurve_plan(load_config(config, overrides), parse_fractions(fractions), seeds, metric)
    name = config.stem if config is not None else "default"
    _execute_study(plan, out_dir or Path("studies") / f"datacurve-{name}", workers, backend, address)


@app.command()
def audit(
    config: ConfigOption = None,
    overrides: SetOption = None,
    folds: Annotated[
        int,
        typer.Option(
            "--folds", "-k", help="Fold models (each example judged by the one that did not see it)."
        ),
    ] = 5,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Default: audits/<config>. Re-run to resume.")
    ] = None,
    budget: Annotated[int | None, typer.Option(help="Epochs per fold model (default: train.epochs).")] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Write keep.txt without the label, duplicate and leak issues.")
    ] = False,
    workers: WorkersOption = None,
) -> None:
    """Audit the training data: wrong labels, duplicates, train/test leaks, outliers, class balance, top losses."""
    from kaizen.audit import run_audit

    cfg = load_config(config, overrides)
    out_dir = out_dir or Path("audits") / (config.stem if config is not None else "default")

    def progress(event) -> None:
        if event.status != "skipped":
            line = f"[{event.index}/{event.total}] {event.variant} · {event.status} in {event.seconds:.1f}s"
            err.print(line + (f": {event.error}" if event.error else ""), highlight=False, soft_wrap=True, markup=False)

    def start(to_run: int, finished: int) -> None:
        earlier = f", {finished} finished earlier" if finished else ""
        err.print(f"audit: {folds} fold models, {to_run} to train{earlier} -> {out_dir}", soft_wrap=True, markup=False)

    try:
        result = run_audit(cfg, out_dir, folds, workers, budget, fix, on_event=progress, on_start=start)
    except KeyboardInterrupt:
        err.print("interrupted: finished fold models are kept; run the same command again to resume")
        raise
    data = result.summary["data"]
    balance = result.summary["class_balance"]
    out.print(
        f"audited {data['train_examples']:,} training examples ({result.summary['out_of_fold_acc']:.2%} "
        f"out-of-fold accuracy) · class balance: largest/smallest {balance['imbalance']:.2f}",
        highlight=False,
    )
    out.print("  ".join(f"{kind} {count}" for kind, count in result.counts.items()), highlight=False, markup=False)
    if result.kept is not None:
        out.print(
            f"keep.txt: {result.kept:,} of {data['train_examples']:,} kept (label, duplicate and leak issues "
            f"dropped) -> train with --set data.keep={result.out_dir / 'keep.txt'}",
            soft_wrap=True,
        )
    out.print(f"report: {result.out_dir / 'report.html'}  (also issues.csv, audit.json)", soft_wrap=True, markup=False)


@app.command()
def report(
    study_dir: Annotated[Path, typer.Argument(help="A study directory (compare, study or datacurve).")],
    metric: Annotated[
        str | None, typer.Option(help="Judge on this summary.json value (default: the study's).")
    ] = None,
    correction: CorrectionOption = None,
    interval: IntervalOption = None,
) -> None:
    """Rebuild a study's results.csv, report.md and report.html from its run directories, without training."""
    from kaizen.study import write_report
    from kaizen.study.results import check_choices

    check_choices(metric or "test.acc", correction or "holm", interval or "t")
    _print_results(write_report(study_dir, metric, correction, interval), study_dir)


@app.command()
def tune(
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="key=log(lo,hi) | float(lo,hi) | int(lo,hi[,log]) | choice(a,b,...) (repeatable; quote it).",
        ),
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    trials: Annotated[
        int,
        typer.Option(
            help="Total trials of the search (earlier runs and other processes on the storage count); "
            "run again to resume."
        ),
    ] = 20,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study directory (default: studies/tune-<config>).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default: sqlite:///<out>/optuna.db); share it to search together."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name in the storage (default: the --out name).")
    ] = None,
    metric: Annotated[str, typer.Option(help="val_acc (maximised) or val_loss (minimised).")] = "val_acc",
    pruner: Annotated[
        str, typer.Option(help="median: stop trials below the median at the same epoch; none.")
    ] = "median",
) -> None:
    """Search hyperparameters with Optuna (TPE, pruning); resumable; writes best.yaml and importance.png."""
    from kaizen.study.tune import tune as run_search
    from kaizen.study.tune_console import print_result, start_line, trial_line

    cfg = load_config(config, overrides)
    out_dir = out_dir or Path("studies") / f"tune-{config.stem if config is not None else 'default'}"

    def start(result, counted: int, to_run: int) -> None:
        err.print(start_line(result, trials, counted, to_run), highlight=False, soft_wrap=True)

    def progress(event) -> None:
        line, style = trial_line(event)
        err.print(line, style=style, highlight=False, soft_wrap=True)

    try:
        result = run_search(
            cfg,
            space or [],
            trials,
            out_dir,
            storage,
            study_name,
            metric,
            pruner,
            on_start=start,
            on_trial=progress,
        )
    except KeyboardInterrupt:
        err.print(
            "interrupted: finished trials are kept in the storage; run the same command again to resume",
            soft_wrap=True,
        )
        raise
    if not print_result(result, out, err):
        raise typer.Exit(1)  # a search that found nothing is not a success


@app.command()
def doctor(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Race the top recommendations (same seed and data) and rank them."),
    ] = False,
    tries: Annotated[
        list[str] | None,
        typer.Option("--try", help="With --verify: race these overrides instead (repeatable)."),
    ] = None,
    candidates: Annotated[
        int, typer.Option("--candidates", help="With --verify: how many fixes to race.")
    ] = 3,
    budget: Annotated[
        int | None, typer.Option("--budget", help="With --verify: epochs per trial (default: the run's).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="With --verify: seeds per candidate.")] = 1,
) -> None:
    """Diagnose a run: each problem with its evidence, and the overrides to try (best first)."""
    import json

    from kaizen.doctor import examine, read_run
    from kaizen.doctor.report import findings_json, json_safe, render_findings
    from kaizen.verify import race, render_race

    if tries and not verify:
        raise KaizenError("--try goes with --verify: kaizen doctor RUN --verify --try optim.lr=0.01")
    record = read_run(run)
    for warning in record.corrupt_lines:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    findings = examine(record)
    report = findings_json(record, findings)
    if not as_json:
        out.print(render_findings(record, findings))
    if verify:
        if not as_json:
            out.print(
                "\n[bold]racing the candidate fixes[/] (each trial changes only what its row lists) ..."
            )
        result = race(record.path, candidates, tries, budget, seeds, quiet=True)
        if result is None:
            report["verification"] = None
            if not as_json:
                out.print("nothing to fix: no warning or critical finding recommends a change")
        else:
            report["verification"] = result.to_dict()
            if not as_json:
                out.print(render_race(result))
    if as_json:
        print(json.dumps(json_safe(report), indent=2))


@app.command()
def check(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """The recipe's sanity checks, pass/fail, before a long run (exit 1 if any fails)."""
    from kaizen.doctor.check import passed, run_checks
    from kaizen.doctor.report import render_checks

    checks = run_checks(load_config(config, overrides))
    out.print(render_checks(checks))
    failed = [result for result in checks if not passed(result)]
    if failed:
        raise typer.Exit(1)


@app.command()
def improve(
    config: ConfigOption = None,
    overrides: SetOption = None,
    budget: Annotated[
        str,
        typer.Option(
            help="Device-seconds of training (90s, 20m, 1h) or runs of the start config (8x); more than 2 x --seeds "
            "runs, which one confirmation takes."
        ),
    ] = "8x",
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory (default: improve/<run name>); rerun to resume.")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds of each full-length comparison (at least 3).")] = 3,
    workers: Annotated[int | None, typer.Option(help="Runs in parallel (default 1).")] = 1,
    backend: Annotated[str, typer.Option(help="Where runs execute: local or ray.")] = "local",
    address: AddressOption = None,
    audit_data: Annotated[bool, typer.Option("--audit", help="Audit the training data and race its fix.")] = False,
    candidates: Annotated[int, typer.Option(help="Most candidates raced per round.")] = 5,
) -> None:
    """Check, diagnose, race fixes, adopt only with evidence, repeat within a budget; journal + recipe."""
    from kaizen.improve import improve as run_improve

    cfg = load_config(config, overrides)

    def progress(line: str) -> None:
        err.print(line, highlight=False, soft_wrap=True)

    try:
        journal = run_improve(
            cfg,
            budget,
            out_dir=out_dir,
            seeds=seeds,
            workers=workers,
            backend=backend,
            address=address,
            audit=audit_data,
            max_candidates=candidates,
            on_progress=progress,
        )
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are kept; run the same command again to resume", soft_wrap=True)
        raise
    final = journal["final"]
    gain = final["test_gain"]
    out.print(
        f"start {100 * final['test_start']['mean']:.2f}% -> final {100 * final['test_final']['mean']:.2f}% test "
        f"accuracy ({100 * gain['diff']:+.2f} points); {journal['stopped'] or 'budget spent'}",
        highlight=False,
        soft_wrap=True,
    )
    folder = Path(journal["out_dir"])
    out.print(f"journal: {folder / 'journal.html'}  recipe: {folder / 'recipe.yaml'}", highlight=False)


@app.command("lr-find")
def lr_find(
    config: ConfigOption = None,
    overrides: SetOption = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG of the curve (default: <runs_dir>/lr-find-<name>.png)")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Print only the --set optim.lr=... to use.")] = False,
) -> None:
    """Learning-rate range test: the loss over exponentially growing rates, and a suggested rate."""
    from kaizen.doctor.lr_find import VALLEY_FACTOR, range_test
    from kaizen.doctor.lr_find import plot as plot_curve

    cfg = load_config(config, overrides)
    result = range_test(cfg)
    if result.suggestion is None:
        raise KaizenError(f"the loss never fell during the range test ({result.stopped}): no rate to suggest")
    if apply:
        print(f"--set optim.lr={result.suggestion:.2g}")
        return
    path = plot_curve(result, plot or Path(cfg.log.runs_dir) / f"lr-find-{cfg.run_name()}.png")
    out.print(
        f"range test: {len(result.lrs)} steps of batch {result.batch_size} with {result.optimizer}, "
        f"lr {result.lrs[0]:.1e} to {result.lrs[-1]:.2g}; stopped: {result.stopped}",
        highlight=False,
    )
    out.print(
        f"suggestion: [bold]{result.suggestion:.2g}[/] (valley rule: the rate at the smoothed loss's minimum / "
        f"{VALLEY_FACTOR:g}); steepest-slope rule: {result.steepest or float('nan'):.2g}",
        highlight=False,
    )
    out.print(f"curve: {path}\nuse: --set optim.lr={result.suggestion:.2g}", highlight=False, markup=False)


@app.command("inspect")
def inspect_(
    config: ConfigOption = None,
    overrides: SetOption = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (default: train.batch_size).")] = None,
    eval_mode: Annotated[
        bool, typer.Option("--eval", help="Inference mode: batch norm running statistics, no dropout.")
    ] = False,
) -> None:
    """One batch forward: each layer's output shape, mean, std, min, max, NaN/Inf count and parameters."""
    from kaizen.nn.inspect import inspect_config, render_inspection

    if batch is not None and batch < 1:
        raise KaizenError(f"--batch must be at least 1, not {batch}")
    cfg = load_config(config, overrides)
    rows = inspect_config(cfg, batch, train_mode=not eval_mode)
    mode = "inference mode" if eval_mode else "training mode"
    title = (
        f"{cfg.model.preset or cfg.model.backbone or 'layer list'} on {cfg.data.name} · one batch of {rows[0].shape[0]} · {mode}"
    )
    out.print(render_inspection(rows, title))


@app.command()
def ensemble(
    runs: Annotated[list[Path] | None, typer.Argument(help="Finished runs to combine.")] = None,
    config: Annotated[
        list[Path] | None,
        typer.Option(
            "--config", "-c", help="Train the members of this config (stacking: repeat per base learner)."
        ),
    ] = None,
    overrides: SetOption = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="Runs: average | vote. Training: seeds | bagging | boosting | stacking | snapshot."
        ),
    ] = None,
    members: Annotated[
        int, typer.Option("--members", "-k", help="Members (stacking: folds; snapshot: cycles).")
    ] = 5,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the members' runs and ensemble.json.")
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate finished runs on: test or val.")] = "test",
) -> None:
    """Combine finished runs, or train an ensemble's members; report each member beside the ensemble."""
    from kaizen.ensemble import build_ensemble, render_table

    if runs and overrides:
        raise KaizenError("--set applies to training members (-c); finished runs keep their configs")
    result = build_ensemble(
        runs,
        [load_config(path, overrides) for path in config or [None]] if config or not runs else None,
        method,
        members,
        out_dir,
        split,
        progress=lambda line: err.print(line, highlight=False, markup=False),
    )
    out.print(render_table(result))
    for note in result.notes:
        out.print(note, highlight=False, soft_wrap=True, markup=False)
    out.print(f"[bold]{result.headline()}[/]", highlight=False, soft_wrap=True)
    if out_dir is not None:
        out.print(f"wrote {out_dir / 'ensemble.json'}", soft_wrap=True, markup=False)


@app.command("runs")
def runs_(
    folder: Annotated[Path, typer.Argument(help="A folder of runs (searched below too).")] = Path("runs"),
) -> None:
    """List runs: status, data, model, epochs, validation accuracy at the best checkpoint, test accuracy."""
    from kaizen.listing import find_runs, read_row, render_rows

    paths = find_runs(folder)
    if not paths:
        out.print(f"no runs in {folder}", markup=False)
        return
    rows = [read_row(path) for path in paths]
    for line in render_rows(rows, folder):
        print(line)


@app.command("export")
def export_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
) -> None:
    """Export a run's model to ONNX (pixels in [0, 1] in; logits and probabilities out), checked with onnxruntime."""
    from kaizen import load_run
    from kaizen.export import TOLERANCE, export_onnx

    report = export_onnx(load_run(run), onnx)
    shape = "×".join(str(size) for size in report.input_shape)
    out.print(
        f"wrote {report.path} ({report.size / 1024:.1f} KiB, opset {report.opset}): input 'images' N×{shape} "
        f"pixels in [0, 1]; outputs 'logits', 'probabilities'",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"onnxruntime vs PyTorch on {report.images} {report.image_source}: max |diff| {report.max_diff:.2e} "
        f"(limit {TOLERANCE:g})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("models")
def models_(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style pattern of timm names, e.g. 'efficientnet*'.")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    limit: Annotated[int, typer.Option(help="Describe at most this many backbones.")] = 25,
) -> None:
    """List timm backbones (model.backbone): parameters, MACs per image at the data's size, weights at hand."""
    from rich.table import Table

    from kaizen.data import data_shape
    from kaizen.nn import backbone

    names = backbone.find_backbones(pattern)
    if not names:
        raise KaizenError(f"no timm backbone matches '{pattern}'{backbone.did_you_mean_backbone(pattern or '')}")
    shape = None
    if config is not None or overrides:
        cfg = load_config(config, overrides)
        if cfg.model.backbone is not None:
            cfg = backbone.resolve(cfg)
        shape, _ = data_shape(cfg.data)
    table = Table("backbone", "parameters", "MACs / image", "input", "weights at hand", box=None)
    files = []
    for name in names[:limit]:
        row = backbone.describe_backbone(name, shape)
        macs = "does not fit" if row["macs"] is None else f"{row['macs'] / 1e6:,.1f} M"
        where = row["weights"][0].split()[0] if row["weights"] else "no"
        table.add_row(name, f"{row['parameters'] / 1e6:,.2f} M", macs, "×".join(map(str, row["input"])), where)
        if row["weights"]:
            files.append(f"{name} ({row['weights'][0]}): model.pretrained={row['weights'][1]}")
    out.print(table)
    for line in files:
        out.print(line, highlight=False, soft_wrap=True)
    out.print(
        "weights 'no': model.pretrained=true downloads them from the hub where it is reachable; else give a "
        ".safetensors or .pth file",
        highlight=False,
        soft_wrap=True,
    )
    if len(names) > limit:
        out.print(f"{len(names) - limit} more match; narrow the pattern or raise --limit")


def main() -> None:
    """Entry point: run the app, turning KaizenError (and an OS refusal) into one line and exit code 2."""
    warnings.showwarning = _show_warning
    from kaizen.interrupts import exit_code, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # docker stop, Slurm, systemd: recorded as Ctrl-C is
            app()
    except (KaizenError, OSError) as error:
        prefix = ""
        if os.environ.get("RANK", "0") != "0":  # one of several data-parallel processes
            from kaizen.training.distributed import error_prefix

            prefix = error_prefix()
        err.print(f"[bold red]error:[/] {prefix}{escape(_one_line(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(exit_code())
    except SystemExit as exited:  # typer ends an interrupted command with 130; after SIGTERM it is 143
        sys.exit(exit_code() if exited.code == 130 else exited.code)
    except Exception:
        if os.environ.get("RANK", "0") != "0":  # a peer's failure (its line is printed) ends this one too
            from kaizen.training.distributed import error_prefix

            error_prefix()  # the launcher ends this process during the pause when rank 0 failed first
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A KaizenWarning is one line, `warning: …`; other warnings as Python prints them."""
    if issubclass(category, KaizenWarning):
        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_warning(message, category, filename, lineno, file, line)


_python_warning = warnings.showwarning


def _one_line(error: Exception) -> str:
    """A KaizenError's message; for an OSError the system's reason and the file it names."""
    if isinstance(error, KaizenError):
        return str(error)
    where = f"{error.filename}: " if error.filename else ""
    return one_line(f"{where}{error.strerror or error}")


if __name__ == "__main__":
    main()
