"""The `kaizen` command: thin typer commands that parse arguments and call the library.

Every KaizenError becomes one line on stderr and exit code 2; nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kaizen.config import Config
from kaizen.errors import KaizenError

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
) -> None:
    """Train a model and write a run directory."""
    from kaizen import load_run
    from kaizen.track.progress import Reporter
    from kaizen.training.loop import fit

    if resume is not None:
        if config is not None:
            raise KaizenError("--resume continues a run with its own config.yaml; drop --config")
        run = load_run(resume)
        cfg = run.config.override(overrides) if overrides else run.config
        run_dir = fit(cfg, run_dir=run.path, resume=True, reporter=Reporter(enabled=not quiet, console=err))
    else:
        cfg = load_config(config, overrides)
        run_dir = fit(cfg, reporter=Reporter(enabled=cfg.log.progress and not quiet, console=err))
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
    from kaizen.nn import build_model
    from kaizen.nn.summary import render_summary, summarize

    cfg = load_config(config, overrides)
    data = load_data(cfg.data, "cpu")
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)
    shape = "×".join(str(size) for size in data.input_shape)
    out.print(
        f"{cfg.model.preset or 'layer list'} · input {shape} · {data.num_classes} classes · {cfg.data.name}"
    )
    out.print(render_summary(summarize(model, data.input_shape)))


@app.command("eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
) -> None:
    """Evaluate a run: accuracy, loss, per-class precision/recall/F1, confusion matrix, worst mistakes."""
    from kaizen import load_run
    from kaizen.evaluate import headline, render_evaluation
    from kaizen.inference import evaluate_run

    if split not in ("test", "val", "train"):
        raise KaizenError(f"--split must be test, val or train, not '{split}'")
    result, paths = evaluate_run(load_run(run), split)
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
) -> None:
    """Predict the labels of a file of images (Kaggle `ImageId,Label` for CSV input)."""
    from kaizen import load_run
    from kaizen.inference import predict_file

    report = predict_file([load_run(path) for path in runs], input, output)
    models = "1 model" if report["runs"] == 1 else f"an ensemble of {report['runs']} models"
    out.print(f"predicted {report['images']:,} images with {models} -> {report['out']}")


def main() -> None:
    """Entry point: run the app, turning KaizenError into one line and exit code 2."""
    try:
        app()
    except KaizenError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
