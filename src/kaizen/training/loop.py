"""The training loop: one function, read top to bottom.

Each iteration: fetch (an index slice of a seeded permutation of device-resident data), augment, forward (bf16
autocast if asked), loss + penalties, backward, clip, step, schedule, record. Metrics accumulate on the device
and are read only at logging points, so the step never waits on the host.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaizen.config import Config
from kaizen.data.augment import Augment
from kaizen.errors import KaizenError
from kaizen.track import rundir
from kaizen.track.progress import Reporter
from kaizen.track.stats import Metric, StatsRecorder
from kaizen.track.writer import complete_pictures, make_writer
from kaizen.training import distributed, fast
from kaizen.training.early_stop import Monitor
from kaizen.training.examples import select_examples
from kaizen.training.multitask import TaskObjective, attach_tasks
from kaizen.training.optim import build_optimizer
from kaizen.training.regularize import Penalties
from kaizen.training.schedule import LRSchedule
from kaizen.training.transfer import FineTune, init_weights, lr_multiplier


def resolve_device(name: str) -> torch.device:
    """Map `train.device` to a torch device; `auto` picks CUDA, then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise KaizenError("train.device = 'cuda' but no CUDA device is available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise KaizenError("train.device = 'mps' but MPS is not available; use auto or cpu")
    return torch.device(name)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The order of training examples in `epoch`: a function of (seed, epoch) only, so resume replays it."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def evaluate_split(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy) of `model` on (x, y), in inference mode."""
    from kaizen.evaluate import predict_proba

    probs = predict_proba(model, x, batch_size)
    picked = probs.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12)
    loss = -picked.log().mean().item()
    acc = (probs.argmax(1) == y).float().mean().item()
    return loss, acc


def evaluate_shared(
    group: distributed.Group, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """`evaluate_split` over all data-parallel processes: each scores its share, the sums are all-reduced."""
    if not group.enabled:
        return evaluate_split(model, x, y, batch_size)
    part = group.part(len(y))
    count = part.stop - part.start
    loss, acc = evaluate_split(model, x[part], y[part], batch_size) if count else (0.0, 0.0)
    loss_sum, correct = group.sum([loss * count, acc * count], x.device)
    return loss_sum / len(y), correct / len(y)


def fit(
    cfg: Config,
    run_dir: Path | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    is_main: bool = True,
    metrics: dict[str, Metric] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Path | None:
    """Train `cfg` and write its run directory; return the directory (None on processes that do not write).

    `run_dir` None creates a new directory under `cfg.log.runs_dir`; with `resume` the run continues from
    `run_dir/checkpoints/last.pt`. `metrics` are custom metrics, `{name: fn(model, data) -> float}`, logged
    at each epoch end (stats.jsonl and TensorBoard). `on_epoch(epoch, metrics)` is called after each epoch is
    written (1-based epoch; train_/val_ loss and acc); raising `Pruned` from it ends the run early with status
    "pruned" (hyperparameter search uses this to stop unpromising trials).

    Started by torchrun (or `kaizen train --devices N`), every process calls `fit`: they join the process group
    and train data-parallel (see kaizen.training.distributed); only rank 0 reports progress and writes.
    """
    if resume and run_dir is not None and complete_pictures(run_dir):  # trained, only its pictures were missing
        return run_dir
    device = resolve_device(cfg.train.device)
    group, device = distributed.setup(device)  # one process: Group() and the device unchanged
    try:
        written = _fit(cfg, run_dir, resume, reporter, is_main, metrics, on_epoch, device, group)
        group.barrier()  # all processes are done before any of them takes the group down
        return written
    finally:
        group.close()


def _fit(
    cfg: Config,
    run_dir: Path | None,
    resume: bool,
    reporter: Reporter | None,
    is_main: bool,
    metrics: dict[str, Metric] | None,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    device: torch.device,
    group: distributed.Group,
) -> Path | None:
    from kaizen.data import load_data
    from kaizen.nn import build_model

    is_main = is_main and group.is_main
    reporter = reporter if reporter is not None and group.is_main else Reporter(enabled=False)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    elif group.enabled and device.type == "cpu":  # the node's cores, shared among its processes
        torch.set_num_threads(max(1, distributed.cpu_cores() // group.local_world_size))
    # the thread count changes a run's numbers (float summation order), so config.yaml records it
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": torch.get_num_threads()})})
    torch.manual_seed(cfg.train.seed)
    # Tiny activations (e.g. ReLU after a normal(0.01) init) become denormal floats, which run some 20x slower
    # on x86 CPUs; flushing them to zero changes no result that matters and keeps such runs fast.
    torch.set_flush_denormal(True)

    # --- data and model ---------------------------------------------------------------------------
    data = load_data(cfg.data, device)
    data, example_weights = select_examples(data, cfg.train, cfg.data.split_seed)  # folds, bootstrap, weights
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes)
    model = attach_tasks(model, cfg.model.tasks, data.input_shape).to(device)  # multi-task heads
    transferred = None if resume else init_weights(model, cfg.transfer)  # transfer learning
    multiplier = lr_multiplier(cfg.transfer)  # discriminative learning rates (transfer.lr_groups)
    optimizer = (
        build_optimizer(model, cfg.optim)
        if multiplier is None
        else build_optimizer(model, cfg.optim, multiplier)
    )
    finetune = FineTune(model, cfg.transfer)  # frozen layers, gradual unfreezing
    tasks = TaskObjective(model, cfg.model.tasks, data.class_names) if cfg.model.tasks else None
    n_train = len(data.y_train)
    batch_size = min(cfg.train.batch_size, n_train)
    if n_train < group.min_batch():
        raise KaizenError(
            f"the training split holds {n_train} example{'s' * (n_train != 1)} (data.fraction = "
            f"{cfg.data.fraction:g}): a batch needs at least {group.min_batch()}; raise data.fraction"
        )
    if batch_size < group.min_batch():
        raise KaizenError(
            f"train.batch_size {batch_size} is too small for {group.world_size} processes: each trains on its "
            f"slice of every batch; use at least {group.min_batch()}"
        )
    # a last batch too small to share (one process: a lone sample) is skipped
    steps_per_epoch = n_train // batch_size + (1 if n_train % batch_size >= group.min_batch() else 0)
    schedule = LRSchedule(optimizer, cfg.schedule, cfg.train.epochs, steps_per_epoch)
    penalties = Penalties(model, cfg.reg)
    monitor = Monitor(cfg.early_stop, has_val=len(data.y_val) > 0)
    # with per-example weights (boosting) the loss is reduced after weighting; the plain path is unchanged
    criterion = nn.CrossEntropyLoss(
        label_smoothing=cfg.reg.label_smoothing, reduction="mean" if example_weights is None else "none"
    )
    bf16 = fast.use_bf16(cfg.train, model, data.input_shape, device)  # train.bf16, with auto resolved
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    # the step's forward: channels-last, torch.compile / CUDA graphs; `model` stays the plain module
    train_cfg = cfg.train
    if group.enabled and train_cfg.cuda_graphs:
        reporter.note("train.cuda_graphs is not used with data-parallel training; compiling without them")
        train_cfg = train_cfg.model_copy(update={"cuda_graphs": False})
    forward = fast.prepare(model, train_cfg, device, reporter.note)
    parallel_forward = group.parallel(forward)  # data-parallel: DDP around the step's forward
    augment = Augment(cfg.augment)
    group.seed_rank(cfg.train.seed)  # dropout and augmentation differ per process, reproducibly

    # --- run directory: created or resumed ---------------------------------------------------------
    start_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    if resume:
        state = rundir.load_checkpoint(run_dir / "checkpoints" / "last.pt", device)
        _load_model_state(model, state, run_dir / "checkpoints" / "last.pt")
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        monitor.load_state_dict(state["monitor"])
        start_epoch = int(state["epoch"])
        group.restore_rng(state, cfg.train.seed, start_epoch)
        if start_epoch >= cfg.train.epochs or monitor.should_stop:
            why = "it stopped early" if monitor.should_stop else f"all {cfg.train.epochs} epochs are done"
            raise KaizenError(
                f"nothing to resume in {run_dir}: {why}; to train longer add --set train.epochs=N"
            )
        best_path = run_dir / "checkpoints" / "best.pt"
        if best_path.is_file():
            best_state = rundir.load_checkpoint(best_path, device)["model"]
    elif is_main:
        run_dir = run_dir or rundir.new_run_dir(cfg.log.runs_dir, cfg.run_name())
    writer = make_writer(
        run_dir,
        is_main,
        plots=cfg.log.plots,
        stats=cfg.log.stats,
        tensorboard=cfg.log.tensorboard,
        histograms=cfg.log.histograms,
    )
    if resume:
        writer.resume(start_epoch, cfg.to_yaml())
    else:
        meta = {**rundir.environment(device), "seed": cfg.train.seed}
        if group.enabled:
            meta["distributed"] = group.describe()
        writer.start(cfg.to_yaml(), meta)
    custom_metrics = dict(metrics or {})  # `metrics` below is each epoch's train/val numbers
    if tasks is not None:  # each extra task's validation metric, every epoch
        custom_metrics.update(tasks.metrics(len(data.y_val) > 0, cfg.train.eval_batch_size))
    if transferred is not None and reporter.enabled:
        reporter.console.print(transferred.line(), highlight=False, soft_wrap=True)
    # Per-layer statistics and TensorBoard summaries on a few sampled steps; see kaizen.track.stats.
    recorder = StatsRecorder(
        model, cfg.log, steps_per_epoch, writer, custom_metrics, example=data.x_train[:2]
    )

    record = {
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "mean": data.mean,
        "std": data.std,
    }

    def checkpoint_state(epoch: int, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"epoch": epoch, "model": weights, **record}

    def save_last(epoch: int) -> None:
        """checkpoints/last.pt: everything `--resume` needs to continue after `epoch` as if never stopped."""
        rng_ranks = group.rng_states()  # each data-parallel process's own (None with one process)
        writer.checkpoint(
            "last",
            {
                **checkpoint_state(epoch, model.state_dict()),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "monitor": monitor.state_dict(),
                "rng": torch.get_rng_state(),
                **({} if rng_ranks is None else {"rng_ranks": rng_ranks}),
            },
        )

    kept = start_epoch  # the epoch last.pt holds

    # --- the loop -------------------------------------------------------------------------------------
    log_every = max(1, steps_per_epoch // 10)
    epoch = start_epoch
    # the timings add up every session of the run: those of the epochs kept before a resume, then this one's
    train_seconds = sum(row["seconds"] for row in writer.rows if row["split"] == "train")
    reporter.start(cfg.train.epochs, steps_per_epoch, start_epoch)
    try:
        if not resume:  # an interrupt in the first epoch resumes from here, as if never stopped
            save_last(0)
        for epoch in range(start_epoch, cfg.train.epochs):
            model.train()
            finetune.start_epoch(epoch)  # what trains this epoch; frozen batch norms stay in eval mode
            step_forward = parallel_forward()  # DDP (rebuilt if what trains changed), or the forward itself
            began = time.perf_counter()
            order = epoch_permutation(n_train, cfg.train.seed, epoch, device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for step in range(steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]  # fetch
                global_batch = len(index)
                index = group.shard(index)  # data-parallel: this process's slice of the global batch
                batch = augment(data.x_train[index], data.y_train[index])  # augment
                yb = batch.y
                recorder.before_forward(step)
                with autocast:
                    logits = step_forward(batch.x).float()  # forward
                    loss = criterion(logits, yb)
                    if batch.mix is not None:  # mixup / cutmix: the loss of both label sets, weighted
                        loss = batch.mix * loss + (1 - batch.mix) * criterion(logits, batch.y_mixed)
                    if example_weights is not None:
                        loss = (loss * example_weights[index]).mean()
                objective = loss if tasks is None else tasks.objective(loss, batch)  # + weighted task losses
                penalty = penalties.term()
                total = objective if penalty is None else objective + penalty
                if len(yb) * group.world_size != global_batch:  # unequal slices: weigh each by its size
                    total = total * group.loss_scale(len(yb), global_batch)
                optimizer.zero_grad(set_to_none=True)
                total.backward()  # backward
                recorder.after_backward(step)  # raw gradients, before clipping
                if cfg.train.clip_value is not None:
                    nn.utils.clip_grad_value_(model.parameters(), cfg.train.clip_value)
                if cfg.train.clip_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
                lr = schedule.current_lr()  # the rate this step trains with; the epoch's row reports its last
                optimizer.step()  # step
                recorder.after_step(step)
                schedule.step()  # schedule
                loss_sum += loss.detach() * len(yb)  # record (on the device: no sync)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += len(yb)
                if (step + 1) % log_every == 0 or step + 1 == steps_per_epoch:
                    # the one sync per logging interval (summed over data-parallel processes)
                    total_loss, total_correct, total_seen = group.sum([loss_sum, correct, seen], device)
                    mean_loss = total_loss / total_seen
                    if not math.isfinite(mean_loss):
                        raise _Diverged(epoch + 1, step + 1, mean_loss)
                    reporter.step(
                        epoch, step + 1, mean_loss, total_correct / total_seen, schedule.current_lr()
                    )
            metrics = {"train_loss": total_loss / total_seen, "train_acc": total_correct / total_seen}
            group.sync_buffers(model)  # batch-norm statistics: the average over processes
            seconds = {"train": time.perf_counter() - began}
            train_seconds += seconds["train"]
            if len(data.y_val):
                began = time.perf_counter()
                metrics["val_loss"], metrics["val_acc"] = evaluate_shared(
                    group, model, data.x_val, data.y_val, cfg.train.eval_batch_size
                )
                seconds["val"] = time.perf_counter() - began
                if not math.isfinite(metrics["val_loss"]):  # the epoch's last steps broke the weights
                    raise _Diverged(epoch + 1, steps_per_epoch, metrics["val_loss"])
            schedule.end_epoch(metrics.get("val_loss"))
            rows = [
                {
                    "epoch": epoch + 1,
                    "split": split,
                    "loss": metrics[f"{split}_loss"],
                    "acc": metrics[f"{split}_acc"],
                    "lr": lr,
                    "seconds": seconds[split],
                }
                for split in seconds
            ]
            writer.log_epoch(rows)
            recorder.end_epoch(epoch + 1, data)
            improved = monitor.update(epoch + 1, metrics)
            if improved:
                best_state = copy.deepcopy(model.state_dict())
                writer.checkpoint("best", checkpoint_state(epoch + 1, best_state))
            cycle = schedule.cycle_ended(epoch + 1)
            if cycle is not None:  # snapshot ensembles: the weights at the end of each cosine cycle
                writer.checkpoint(f"snapshot-{cycle}", checkpoint_state(epoch + 1, model.state_dict()))
            last_epoch = epoch + 1 == cfg.train.epochs or monitor.should_stop
            if (epoch + 1) % cfg.checkpoint.every == 0 or last_epoch:
                save_last(epoch + 1)
                kept = epoch + 1
            reporter.epoch_end(epoch, metrics)
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
            if monitor.should_stop:
                break
    except _Diverged as diverged:
        reporter.close()
        recorder.abort(diverged.epoch)
        advice = _divergence_advice(cfg)
        message = (
            f"training diverged at epoch {diverged.epoch}, step {diverged.step}: loss is {diverged.loss}; "
            f"the last good checkpoint is kept; try {advice}"
        )
        writer.finish("failed", error=message)
        raise KaizenError(message) from None
    except Pruned as pruned:
        reporter.close()
        recorder.abort(epoch + 1)
        writer.finish("pruned", error=str(pruned) or f"pruned after epoch {epoch + 1}")
        raise
    except KeyboardInterrupt:
        reporter.close()
        writer.finish("stopped", error="interrupted; continue with kaizen train --resume")
        raise Interrupted(run_dir, kept) from None
    except BaseException as error:
        reporter.close()
        reason = str(error) if isinstance(error, KaizenError) else f"{type(error).__name__}: {error}"
        writer.finish("failed", error=reason)
        raise
    reporter.close()
    penalties.remove()

    # --- the model the run ends with, and its test score ---------------------------------------------
    ended_with = "last.pt"
    if cfg.early_stop.restore_best and best_state is not None:
        model.load_state_dict(best_state)
        ended_with = "best.pt"
    test_loss, test_acc = evaluate_shared(group, model, data.x_test, data.y_test, cfg.train.eval_batch_size)
    completed = epoch + 1
    summary = {
        "status": "done",
        "epochs_completed": completed,
        "stopped_early": monitor.should_stop,
        "checkpoint": ended_with,
        "monitor": monitor.name,
        "best_epoch": monitor.best_epoch,
        "best": monitor.best_metrics,
        "final": {key: round(value, 6) for key, value in metrics.items()},
        "test": {"loss": round(test_loss, 6), "acc": round(test_acc, 6), "n": len(data.y_test)},
        "data": {
            "source": data.source,
            "train": n_train,
            "val": len(data.y_val),
            "test": len(data.y_test),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "params": {
            "total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        },
        "timings": {
            "train_seconds": round(train_seconds, 3),
            "seconds_per_epoch": round(train_seconds / max(completed, 1), 3),
            "images_per_second": round(n_train * completed / max(train_seconds, 1e-9), 1),
        },
        "speed": fast.in_effect(model, train_cfg, forward, optimizer, device, bf16),
    }
    if group.enabled:
        summary["distributed"] = group.describe()
    if tasks is not None and is_main:
        summary["tasks"] = tasks.evaluate(data.x_test, data.y_test, cfg.train.eval_batch_size)
    if transferred is not None:
        summary["transfer"] = transferred.to_dict()
    writer.finish("done", summary)
    return run_dir if is_main else None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped a run; its message says what was kept and how to continue."""

    def __init__(self, run_dir: Path | None, epoch: int):
        kept = f"epoch {epoch}" if epoch else "its initial state"
        super().__init__(
            f"interrupted: {run_dir} keeps {kept} in checkpoints/last.pt; continue with "
            f"kaizen train --resume {run_dir}"
        )


class Pruned(Exception):
    """Raised by an `on_epoch` callback to end a run early on purpose (e.g. an Optuna trial that is pruned)."""


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int, loss: float):
        super().__init__(f"loss {loss} at epoch {epoch} step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


def _divergence_advice(cfg: Config) -> str:
    advice = [f"--set optim.lr={cfg.optim.lr / 10:g}"]
    if cfg.train.clip_norm is None:
        advice.append("--set train.clip_norm=1.0")
    if cfg.model.norm == "none":
        advice.append("--set model.norm=batch")
    return " or ".join(advice)


def _load_model_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load weights, or raise one line saying how the checkpoint differs from the model."""
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise KaizenError(f"{path} is not a kaizen checkpoint (no model weights)")
    own = model.state_dict()
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    mismatched = [key for key in own if key in weights and weights[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            key = mismatched[0]
            parts.append(f"{key} is {tuple(weights[key].shape)} there, {tuple(own[key].shape)} here")
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        raise KaizenError(f"{path} belongs to another architecture: {'; '.join(parts)}")
    model.load_state_dict(weights)
