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

from kaizen.config import Config
from kaizen.errors import KaizenError, KaizenWarning

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="kaizen: train image classifiers, see why they work, prove which technique helps.",
)
config_app = typer.Typer(no_args_is_help=True, help="Show configs.")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

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
) -> None:
    """Train a model and write a run directory."""
    from kaizen import load_run
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    if resume is not None:
        if config is not None:
            raise KaizenError("--resume continues a run with its own config.yaml; drop --config")
        from kaizen.training.resume import resume_config

        run = load_run(resume)
        cfg = resume_config(run.config, overrides)  # only keys that cannot change the steps already taken
    else:
        cfg = load_config(config, overrides)
    if devices is not None:
        from kaizen.training import distributed
        from kaizen.training.loop import resolve_device

        distributed.check_devices(devices, resolve_device(cfg.train.device), cfg.train.batch_size)
        if devices > 1:  # the same command in N processes, started by torch's elastic launcher
            from kaizen.track import rundir

            rundir.check_writable(run.path if resume is not None else cfg.log.runs_dir)  # before any starts
            distributed.launch(devices, distributed.worker_args(config, overrides, resume, quiet))
            return
    try:
        if resume is not None:
            run_dir = fit(
                cfg, run_dir=run.path, resume=True, reporter=Reporter(enabled=not quiet, console=err)
            )
        else:
            run_dir = fit(cfg, reporter=Reporter(enabled=cfg.log.progress and not quiet, console=err))
    except KeyboardInterrupt as stop:  # what was kept, and how to continue
        if os.environ.get("RANK", "0") == "0":
            err.print(str(stop) or "interrupted", highlight=False, soft_wrap=True)
        raise
    if run_dir is None:  # a data-parallel process other than rank 0: rank 0 reports
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
    out.print(f"run: {run_dir}    next: kaizen eval {run_dir}", soft_wrap=True)


@config_app.command("show")
def config_show(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """Print the fully resolved config (YAML) with every default filled in."""
    print(load_config(config, overrides).to_yaml(), end="")


@app.command()
def summary(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """Print the model's layer table: output shapes, parameters, MACs per sample."""
    from kaizen.data import load_data
    from kaizen.data.datasets import IDX_CLASS_NAMES
    from kaizen.nn import build_model
    from kaizen.nn.summary import render_summary, summarize

    cfg = load_config(config, overrides)
    if cfg.data.name in IDX_CLASS_NAMES:  # a table needs only the input shape: no files read, none downloaded
        input_shape, num_classes = (1, 28, 28), len(IDX_CLASS_NAMES[cfg.data.name])
    else:
        data = load_data(cfg.data, "cpu")
        input_shape, num_classes = data.input_shape, data.num_classes
    model = build_model(cfg.model, cfg.init, input_shape, num_classes)
    shape = "×".join(str(size) for size in input_shape)
    out.print(f"{cfg.model.preset or 'layer list'} · input {shape} · {num_classes} classes · {cfg.data.name}")
    out.print(render_summary(summarize(model, input_shape)))


@app.command("eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    tta: Annotated[
        int, typer.Option(help="Test-time augmentation: average over this many augmented copies.")
    ] = 0,
) -> None:
    """Evaluate a run: accuracy, loss, per-class precision/recall/F1, confusion matrix, worst mistakes."""
    from kaizen import load_run
    from kaizen.evaluate import headline, render_evaluation
    from kaizen.inference import evaluate_run

    if split not in ("test", "val", "train"):
        raise KaizenError(f"--split must be test, val or train, not '{split}'")
    result, paths = evaluate_run(load_run(run), split, tta)
    out.print(f"[bold]{headline(result, split)}[/]")
    out.print(render_evaluation(result))
    for path in paths:
        out.print(f"wrote {path}")


@app.command()
def predict(
    runs: Annotated[
        list[Path], typer.Argument(help="One run, or several to ensemble (probabilities averaged).")
    ],
    input: Annotated[Path, typer.Option("--input", "-i", help="Images: Kaggle CSV, NPZ (x) or IDX.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    tta: Annotated[
        int, typer.Option(help="Test-time augmentation: average over this many augmented copies.")
    ] = 0,
) -> None:
    """Predict the labels of a file of images (Kaggle `ImageId,Label` for CSV input)."""
    from kaizen import load_run
    from kaizen.inference import predict_file

    report = predict_file([load_run(path) for path in runs], input, output, tta)
    models = "1 model" if report["runs"] == 1 else f"an ensemble of {report['runs']} models"
    out.print(f"predicted {report['images']:,} images with {models} -> {report['out']}")


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

    cfg = load_config(config, overrides)
    preview(cfg, output, images, copies)
    out.print(f"wrote {output}")


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


def _execute_study(
    plan, out_dir: Path, workers: int | None, backend: str = "local", address: str | None = None
) -> None:
    """Run a study plan with one progress line per run, then print the results table and the report's path."""
    from kaizen.study import execute, throughput
    from kaizen.study.backends import check_backend
    from kaizen.study.compare import check_workers
    from kaizen.study.report import headline, render_table

    check_workers(workers)
    check_backend(backend, address)

    def progress(event) -> None:
        if event.status == "skipped":
            return
        line = f"[{event.index}/{event.total}] {event.variant} · seed {event.seed} · {event.status} in {event.seconds:.1f}s"
        if event.error:
            line += f": {event.error}"
        err.print(line, style=None if event.status == "done" else "red", highlight=False, soft_wrap=True)

    def start(to_run: int, finished: int) -> None:
        runs = f"{len(plan.variants)} variants × {len(plan.seeds)} seeds"
        earlier = f", {finished} finished earlier" if finished else ""
        err.print(
            f"{plan.title}: {runs}, {to_run} to run{earlier} -> {out_dir}", highlight=False, soft_wrap=True
        )

    try:
        outcome, report = execute(
            plan, out_dir, workers, on_event=progress, on_start=start, backend=backend, address=address
        )
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are kept; run the same command again to resume")
        raise
    err.print(
        f"ran {outcome.ran}, skipped {outcome.skipped} finished earlier, {len(outcome.failed)} failed · "
        f"{outcome.seconds:.1f}s" + (f" on {outcome.where}" if outcome.where else ""),
        highlight=False,
        soft_wrap=True,
    )
    if outcome.throughput is not None:
        err.print(f"throughput: {throughput.describe(outcome.throughput)}", highlight=False, soft_wrap=True)
    out.print(render_table(report.results, out.width))
    for variant in report.results.variants:
        if variant.errors:
            out.print(f"[red]{variant.id}[/]: {variant.errors[0]}", highlight=False, soft_wrap=True)
    if report.curve is not None:
        out.print(f"[bold]{report.curve.reading}[/]", highlight=False, soft_wrap=True)
    for line in headline(report.results):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"report: {out_dir / 'report.html'}  (also report.md, results.csv)", soft_wrap=True)


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
    seeds: SeedsOption = 3,
    workers: WorkersOption = None,
    metric: MetricOption = "test.acc",
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Compare variants × seeds: mean ± std, 95% CI, t-test against the baseline, HTML report."""
    from kaizen.study import compare_plan

    plan = compare_plan(load_config(config, overrides), vary or [], mode, seeds, metric)
    _execute_study(plan, out_dir, workers, backend, address)


@app.command()
def study(
    name: Annotated[str | None, typer.Argument(help="A built-in study (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="Describe the built-in studies.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Run on this config instead of the study's own setup."),
    ] = None,
    overrides: SetOption = None,
    seeds: SeedsOption = 3,
    workers: WorkersOption = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Default: studies/<name>.")] = None,
    metric: MetricOption = "test.acc",
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Reproduce a seed experiment (vanishing-gradients, optimizers, ...) with statistics and a report."""
    from kaizen.study import RECIPES, study_plan

    if list_:
        for recipe in RECIPES.values():
            variants = ", ".join(variant_id for variant_id, _ in recipe.variants)
            state = "" if recipe.available() else f"  [red]not available: {recipe.missing_note}[/]"
            out.print(f"[bold]{recipe.name}[/] (seed {recipe.seed}){state}", highlight=False)
            out.print(f"    {recipe.question}", highlight=False, soft_wrap=True)
            out.print(
                f"    variants: {variants} · setup: {recipe.description}", highlight=False, soft_wrap=True
            )
        return
    if name is None:
        raise KaizenError("give a study name (kaizen study --list shows them)")
    base = Config.load(config) if config is not None else None
    plan = study_plan(name, base, seeds, metric, overrides)
    suffix = f"-{config.stem}" if config is not None else ""
    _execute_study(plan, out_dir or Path("studies") / f"{name}{suffix}", workers, backend, address)


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

    cfg = load_config(config, overrides)
    out_dir = out_dir or Path("studies") / f"tune-{config.stem if config is not None else 'default'}"

    def start(result, counted: int, to_run: int) -> None:
        held = f", {counted} in the study already" if counted else ""
        err.print(
            f"tune '{result.study.study_name}': {_count(trials, 'trial')}{held}, {to_run} to run · "
            f"{result.metric} "
            f"({result.study.direction.name.lower()}) · storage {result.storage}",
            highlight=False,
            soft_wrap=True,
        )

    def progress(event) -> None:
        value = "" if event.value is None else f" · {event.value:.4f}"
        best = (
            "" if event.best_number is None else f" (best {event.best_value:.4f}, trial {event.best_number})"
        )
        line = (
            f"[{event.counted}/{event.total}] trial {event.number} · {event.shown} · "
            f"{event.state}{value}{best if event.state == 'complete' else ''} · {event.epochs} "
            f"epoch{'s' if event.epochs != 1 else ''} in {event.seconds:.1f}s"
        )
        if event.message:
            line += f": {event.message}"
        style = {"complete": None, "pruned": "yellow"}.get(event.state, "red")
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
    _print_tune(result)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_tune(result) -> None:
    """The end of a search: trials per state, the best trials as a table, importance, the next command."""
    from rich.table import Table

    from kaizen.study.tune import BEST_FILE, describe

    counts = ", ".join(f"{number} {state}" for state, number in result.counts().items())
    err.print(
        f"ran {_count(result.ran, 'trial')} in {result.seconds:.1f}s here · the study has "
        f"{len(result.trials)}: {counts}",
        highlight=False,
    )
    ranked = sorted(
        (trial for trial in result.trials if trial.value is not None and trial.state.name == "COMPLETE"),
        key=lambda trial: trial.value,
        reverse=result.study.direction.name == "MAXIMIZE",
    )
    if not ranked:
        err.print(
            f"[red]no trial completed[/]: see {result.out_dir / 'trials.csv'} for the errors",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)  # a search that found nothing is not a success
    table = Table(title=f"best trials of {len(result.trials)} · {result.metric}", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column(result.metric, justify="right")
    for param in result.space:
        table.add_column(param.key, justify="right")
    for trial in ranked[:5]:
        table.add_row(
            str(trial.number),
            f"{trial.value:.4f}",
            *[
                param.show(trial.params[param.key]) if param.key in trial.params else ""
                for param in result.space
            ],
        )
    out.print(table)
    if result.importance is not None:
        shares = ", ".join(f"{key} {share:.2f}" for key, share in result.importance.items())
        out.print(
            f"importance: {shares} -> {result.out_dir / 'importance.png'}", highlight=False, soft_wrap=True
        )
    else:
        out.print(result.importance_note, highlight=False, soft_wrap=True)
    best = ranked[0]
    out.print(
        f"[bold]best: trial {best.number}, {result.metric} {best.value:.4f}[/] · "
        f"{describe(best, result.space)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"train it: kaizen train -c {result.out_dir / BEST_FILE}    "
        f"(trials: {result.out_dir / 'trials.csv'})",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def doctor(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Train the top recommendation (same seed and data) and compare."),
    ] = False,
    tries: Annotated[
        list[str] | None,
        typer.Option("--try", help="With --verify: try these overrides instead (repeatable)."),
    ] = None,
) -> None:
    """Diagnose a run: each problem with its evidence, and the overrides to try (best first)."""
    import json

    from kaizen.doctor import examine, read_run
    from kaizen.doctor.report import findings_json, json_safe, render_findings, render_verification
    from kaizen.doctor.verify import verify as verify_run

    if tries and not verify:
        raise KaizenError("--try goes with --verify: kaizen doctor RUN --verify --try optim.lr=0.01")
    record = read_run(run)
    for warning in record.corrupt_lines:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    findings = examine(record)
    report = findings_json(record, findings)
    if not as_json:
        out.print(render_findings(record, findings))
    if verify:
        if not as_json:
            out.print(
                "\n[bold]verifying[/] (the run's config with the override: same seed, data and budget) ..."
            )
        result = verify_run(record.path, tries, quiet=as_json)
        report["verification"] = result.to_dict()
        if not as_json:
            out.print(render_verification(result))
    if as_json:
        print(json.dumps(json_safe(report), indent=2))


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
        f"{cfg.model.preset or 'layer list'} on {cfg.data.name} · one batch of {rows[0].shape[0]} · {mode}"
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
    from kaizen.ensemble import ensemble_runs, render_table, train_ensemble
    from kaizen.track import rundir

    if runs and config:
        raise KaizenError("give finished runs to combine, or -c to train members, not both")
    if runs:
        if overrides:
            raise KaizenError("--set applies to training members (-c); finished runs keep their configs")
        result = ensemble_runs(runs, method or "average", split)
    else:
        if out_dir is None:
            raise KaizenError("training an ensemble needs --out DIR for its members' runs")
        configs = [load_config(path, overrides) for path in config or [None]]
        result = train_ensemble(
            configs,
            method or "seeds",
            members,
            out_dir,
            progress=lambda line: err.print(line, highlight=False),
        )
    out.print(render_table(result))
    for note in result.notes:
        out.print(note, highlight=False, soft_wrap=True)
    out.print(f"[bold]{result.headline()}[/]", highlight=False, soft_wrap=True)
    if runs and out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise KaizenError(f"cannot create {out_dir}: {error.strerror}") from None
        rundir.write_json(out_dir / "ensemble.json", result.to_dict())
    if out_dir is not None:
        out.print(f"wrote {out_dir / 'ensemble.json'}", soft_wrap=True)


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


def main() -> None:
    """Entry point: run the app, turning KaizenError (and an OS refusal) into one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        app()
    except (KaizenError, OSError) as error:
        prefix = ""
        if os.environ.get("RANK", "0") != "0":  # one of several data-parallel processes
            from kaizen.training.distributed import error_prefix

            prefix = error_prefix()
        from rich.markup import escape  # a message may hold brackets: pip install "kaizen[ray]"

        err.print(f"[bold red]error:[/] {prefix}{escape(_one_line(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception:
        if os.environ.get("RANK", "0") != "0":  # a peer's failure (its line is printed) ends this one too
            from kaizen.training.distributed import error_prefix

            error_prefix()  # the launcher ends this process during the pause when rank 0 failed first
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A KaizenWarning is one line, `warning: …`; other warnings as Python prints them."""
    if issubclass(category, KaizenWarning):
        from rich.markup import escape

        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_warning(message, category, filename, lineno, file, line)


_python_warning = warnings.showwarning


def _one_line(error: Exception) -> str:
    """A KaizenError's message; for an OSError the system's reason and the file it names."""
    if isinstance(error, KaizenError):
        text = str(error)
    else:
        where = f"{error.filename}: " if error.filename else ""
        text = f"{where}{error.strerror or error}"
    # a culprit's own line breaks and control characters are shown escaped, so the error stays one line
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


if __name__ == "__main__":
    main()
