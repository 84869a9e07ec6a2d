"""The training loop, read top to bottom: prepare -> epochs (the step inline) -> epoch hooks -> finish.

`_prepare` builds everything in one commented order (data, the network with its heads, transfer, optimiser,
what trains, schedule, penalties, speed). `_train_epoch` holds the step: fetch (an index slice of a seeded
permutation of device-resident data), augment, forward (bf16 autocast if asked), `objective()` (the one place
the loss is assembled: mixup, example weights, tasks, penalties, data-parallel scaling), backward, clip, step,
schedule, record. Metrics accumulate on the device and are read only at logging points, so the step never waits
on the host. `_end_epoch` runs the epoch hooks (validation, metrics.csv, statistics, best/snapshot/last
checkpoints, early stopping, the caller's `on_epoch`, which may prune); `_finish` writes the summary. Features
hook in per epoch; the only per-step calls are the statistics recorder's three (before the forward, after the
backward, after the step), which do work only on the few steps it samples.

What a run trains with (`_Training`, fixed once prepared) is kept apart from how far it has come
(`_Progress`). Every stateful part a checkpoint holds besides the weights (optimiser, schedule, early stopping's
monitor, the random streams) is one `Stateful` in `_Training.resumable()`: saving and restoring is one loop.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kaizen.config import Config, TrainConfig
from kaizen.data import Data, load_data
from kaizen.data.augment import Augment, Batch
from kaizen.errors import KaizenError
from kaizen.evaluate import predict_proba
from kaizen.interrupts import sigterm_as_interrupt
from kaizen.nn import backbone, build_model
from kaizen.run import load_model_state
from kaizen.track import rundir
from kaizen.track.progress import Reporter
from kaizen.track.stats import Metric, StatsRecorder
from kaizen.track.writer import RunWriter, complete_pictures, make_writer
from kaizen.training import distributed, estimate, fast
from kaizen.training.early_stop import Monitor
from kaizen.training.examples import select_examples
from kaizen.training.multitask import TaskObjective
from kaizen.training.optim import build_optimizer, calmer_lr
from kaizen.training.regularize import Penalties
from kaizen.training.schedule import LRSchedule
from kaizen.training.threads import set_threads
from kaizen.training.transfer import FineTune, TransferReport, init_weights, lr_multiplier


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
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy) of `model` on (x, y), in inference mode (see predict_proba)."""
    probs = predict_proba(model, x, batch_size, prepare)
    picked = probs.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12)
    loss = -picked.log().mean().item()
    acc = (probs.argmax(1) == y).float().mean().item()
    return loss, acc


def evaluate_shared(
    group: distributed.Group, model: nn.Module, data: Data, split: str, batch_size: int
) -> tuple[float, float]:
    """`evaluate_split` of a split's stored images, normalised a batch at a time, over all data-parallel
    processes: each scores its share, the sums are all-reduced."""
    x, y = data.pixels[split], getattr(data, f"y_{split}")
    if not group.enabled:
        return evaluate_split(model, x, y, batch_size, data.prepare)
    part = group.part(len(y))
    count = part.stop - part.start
    loss, acc = evaluate_split(model, x[part], y[part], batch_size, data.prepare) if count else (0.0, 0.0)
    loss_sum, correct = group.sum([loss * count, acc * count], x.device)
    return loss_sum / len(y), correct / len(y)


def fit(
    cfg: Config,
    run_dir: Path | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
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

    The writing process holds the run directory's lock (`rundir.RunLock`) throughout: a second `--resume` of a
    run in progress is refused. SIGTERM is handled as Ctrl-C (recorded "stopped", resumable).
    """
    # a run that trained to the end but lost its pictures to an interrupt only draws them
    if resume and run_dir is not None and complete_pictures(run_dir):
        return run_dir
    device = resolve_device(cfg.train.device)
    group, device = distributed.setup(device)  # one process: Group() and the device unchanged
    lock = rundir.RunLock()
    training = None
    try:
        with sigterm_as_interrupt():
            reporter = reporter if reporter is not None and group.is_main else Reporter(enabled=False)
            if resume and run_dir is not None and group.is_main:  # before anything of the run is read
                lock.acquire(run_dir)
            training = _prepare(cfg, device, group, reporter, resume)
            _open_run(training, run_dir, resume, metrics, lock)
            _train(training, on_epoch)
            written = _finish(training)
            group.barrier()  # all processes are done before any of them takes the group down
            return written
    except KeyboardInterrupt as stop:
        # an interrupt outside the epochs (just after meta.json was written, or while scoring the test split)
        # is recorded as a stop too: no run may say "running" when its process has ended
        writer = training.writer if training is not None else None
        if isinstance(stop, Interrupted) or writer is None or writer.meta.get("status") != "running":
            raise
        writer.finish("stopped", error="interrupted; continue with kaizen train --resume")
        raise Interrupted(training.run_dir, training.progress.kept) from None
    finally:
        lock.release()
        group.close()


class Stateful(Protocol):
    """A part of the run whose state `checkpoints/last.pt` holds, under its key in `_Training.resumable()`."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


class _RandomStreams:
    """Every process's CPU random state (dropout, augmentation) as one stateful part.

    Restored by as many processes as saved it, each takes its own; by another number of processes, ranks other
    than 0 are given fresh streams seeded by the epoch the run resumes at.
    """

    def __init__(self, group: distributed.Group, seed: int):
        self.group, self.seed, self.epoch = group, seed, 0

    def state_dict(self) -> dict[str, Any]:
        ranks = self.group.rng_states()  # each data-parallel process's own (None with one process)
        return {"cpu": torch.get_rng_state(), **({} if ranks is None else {"ranks": ranks})}

    def load_state_dict(self, state: dict[str, Any] | torch.Tensor) -> None:
        if isinstance(state, torch.Tensor):  # a checkpoint of kaizen before this layout: one process's state
            state = {"cpu": state}
        self.group.restore_rng(state, self.seed, self.epoch)


@dataclass
class _Progress:
    """How far a run has come: set by `_open_run` (from the checkpoint when resuming), then by each epoch."""

    start_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's train_/val_ loss and acc
    train_seconds: float = 0.0  # every session's: a resumed run adds to the time of the epochs it kept
    kept: int = 0  # the epoch checkpoints/last.pt holds


@dataclass
class _Training:
    """Everything one run trains with, prepared once (`_prepare`, then `_open_run` for the run directory);
    what changes as it trains is `progress`."""

    cfg: Config
    device: torch.device
    group: distributed.Group
    reporter: Reporter
    data: Data
    example_weights: torch.Tensor | None  # boosting: one weight per training example, else None
    model: nn.Module  # the plain module: what checkpoints hold
    transferred: TransferReport | None
    optimizer: torch.optim.Optimizer
    finetune: FineTune
    tasks: TaskObjective | None
    batch_size: int
    steps_per_epoch: int
    schedule: LRSchedule
    penalties: Penalties
    monitor: Monitor
    criterion: nn.Module
    bf16: bool
    autocast: torch.autocast
    train_in_effect: TrainConfig  # cfg.train as the step's forward uses it (CUDA graphs off with DDP)
    forward: Callable[[torch.Tensor], torch.Tensor]  # channels-last, torch.compile / CUDA graphs
    parallel_forward: Callable[[], Callable[[torch.Tensor], torch.Tensor]]  # DDP around `forward`, per epoch
    augment: Augment
    random_streams: _RandomStreams
    threads_why: str  # how torch's thread count was chosen (train.threads, or the cores free), for meta.json
    # set by _open_run
    run_dir: Path | None = None
    writer: RunWriter | None = None
    recorder: StatsRecorder | None = None
    progress: _Progress = field(default_factory=_Progress)

    def resumable(self) -> dict[str, Stateful]:
        """The stateful parts `last.pt` holds besides the weights, by their key in it."""
        return {
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "monitor": self.monitor,
            "rng": self.random_streams,
        }

    @property
    def is_main(self) -> bool:
        return self.group.is_main

    def objective(
        self, logits: torch.Tensor, batch: Batch, index: torch.Tensor, global_batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (classification loss, the total the step minimises) for the forward pass just made.

        The classification loss (recorded as train_loss) is cross-entropy with label smoothing, of both label
        sets with mixup/cutmix, weighted per example for boosting. The total adds the weighted task losses of a
        multi-task model and the penalties (L1/L2, activation sparsity), and with data-parallel slices of
        unequal size weighs this process's share by its size.
        """
        with self.autocast:
            loss = self.criterion(logits, batch.y)
            if batch.mix_weight is not None:  # mixup / cutmix: the loss of both label sets, weighted
                mixed = self.criterion(logits, batch.y_mixed)
                loss = batch.mix_weight * loss + (1 - batch.mix_weight) * mixed
            if self.example_weights is not None:
                loss = (loss * self.example_weights[index]).mean()
        total = loss if self.tasks is None else self.tasks.objective(loss, batch)  # + weighted task losses
        penalty = self.penalties.term()
        if penalty is not None:
            total = total + penalty
        if len(batch.y) * self.group.world_size != global_batch:  # unequal slices: weigh each by its size
            total = total * self.group.loss_scale(len(batch.y), global_batch)
        return loss, total

    def checkpoint_state(self, epoch: int, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        """A checkpoint: the epoch, the weights, and what a saved model needs of its data."""
        data = self.data
        return {
            "epoch": epoch,
            "model": weights,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "mean": data.mean,
            "std": data.std,
        }

    def save_last(self, epoch: int) -> None:
        """checkpoints/last.pt: everything `--resume` needs to continue after `epoch` as if never stopped."""
        parts = {key: part.state_dict() for key, part in self.resumable().items()}
        self.writer.checkpoint("last", {**self.checkpoint_state(epoch, self.model.state_dict()), **parts})
        self.progress.kept = epoch


def _set_up_process(cfg: Config, device: torch.device, group: distributed.Group) -> tuple[Config, str]:
    """Set this process's threads, seed and denormal handling; return the config as it trains (the thread count
    and what model.backbone implies, both recorded in config.yaml) and why that many threads."""
    threads_why = "train.threads"
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    elif group.enabled and device.type == "cpu":  # the node's cores, shared among its processes
        torch.set_num_threads(max(1, distributed.cpu_cores() // group.local_world_size))
        threads_why = f"the cores shared among {group.local_world_size} processes"
    else:  # the cores actually free, so a busy machine slows the run down gracefully
        threads_why = set_threads(None)
    # the thread count changes a run's numbers (float summation order), so config.yaml records it
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": torch.get_num_threads()})})
    cfg = backbone.resolve(cfg)  # what model.backbone implies (image size, fine-tuning), recorded in config.yaml
    torch.manual_seed(cfg.train.seed)
    # Tiny activations (e.g. ReLU after a normal(0.01) init) become denormal floats, which run some 20x slower
    # on x86 CPUs; flushing them to zero changes no result that matters and keeps such runs fast.
    torch.set_flush_denormal(True)
    return cfg, threads_why


def _prepare(
    cfg: Config, device: torch.device, group: distributed.Group, reporter: Reporter, resume: bool
) -> _Training:
    """Build what the run trains with. The order matters and is this one."""
    # 1. the process: threads (recorded in config.yaml), what a backbone implies, seed, denormals
    cfg, threads_why = _set_up_process(cfg, device, group)
    # 2. data: the splits, then the examples this model trains on (folds, bootstrap, boosting weights)
    checked = estimate.check(cfg, device)  # a model or image size that cannot fit: refused before decoding
    data = load_data(cfg.data, device)
    if not checked:
        estimate.check(cfg, device, (data.input_shape, data.num_classes))
    data, example_weights = select_examples(data, cfg.train, cfg.data.split_seed)
    # 3. the network with its task heads, then transferred weights (not on resume: the checkpoint has them)
    model = build_model(cfg.model, cfg.init, data.input_shape, data.num_classes).to(device)
    data = backbone.prepare(cfg, data, model, device, resume, reporter.note)  # its weights and normalisation
    transferred = None if resume else init_weights(model, cfg.transfer)
    # 4. the optimiser, over every parameter (discriminative rates: transfer.lr_groups), built before anything
    # is frozen so that the layers gradual unfreezing releases later are in it
    multiplier = lr_multiplier(cfg.transfer)
    optimizer = (
        build_optimizer(model, cfg.optim)
        if multiplier is None
        else build_optimizer(model, cfg.optim, multiplier)
    )
    # 5. what trains: frozen layers, gradual unfreezing (re-applied at the start of each epoch)
    finetune = FineTune(model, cfg.transfer)
    tasks = TaskObjective(model, cfg.model.tasks, data.class_names) if cfg.model.tasks else None
    # 6. batches and the schedule over them
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
    # 7. the loss: penalties (on the weights that train at each step), early stopping's monitor, the criterion;
    # with per-example weights (boosting) the loss is reduced after weighting
    penalties = Penalties(model, cfg.reg)
    monitor = Monitor(cfg.early_stop, has_val=len(data.y_val) > 0)
    criterion = nn.CrossEntropyLoss(
        label_smoothing=cfg.reg.label_smoothing, reduction="mean" if example_weights is None else "none"
    )
    # 8. speed: bf16 autocast, the step's forward (channels-last, torch.compile / CUDA graphs), DDP around it
    bf16 = fast.use_bf16(cfg.train, model, data.input_shape, device)  # train.bf16, with auto resolved
    train_in_effect = cfg.train
    if group.enabled and train_in_effect.cuda_graphs:
        reporter.note("train.cuda_graphs is not used with data-parallel training; compiling without them")
        train_in_effect = train_in_effect.model_copy(update={"cuda_graphs": False})
    forward = fast.prepare(model, train_in_effect, device, reporter.note)
    parallel_forward = group.parallel(forward)
    # 9. augmentation, and per-process randomness: dropout and augmentation differ per process, reproducibly
    augment = Augment(cfg.augment)
    group.seed_rank(cfg.train.seed)
    return _Training(
        cfg=cfg,
        device=device,
        group=group,
        reporter=reporter,
        data=data,
        example_weights=example_weights,
        model=model,
        transferred=transferred,
        optimizer=optimizer,
        finetune=finetune,
        tasks=tasks,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        schedule=schedule,
        penalties=penalties,
        monitor=monitor,
        criterion=criterion,
        bf16=bf16,
        autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        train_in_effect=train_in_effect,
        forward=forward,
        parallel_forward=parallel_forward,
        augment=augment,
        random_streams=_RandomStreams(group, cfg.train.seed),
        threads_why=threads_why,
    )


def _open_run(
    training: _Training,
    run_dir: Path | None,
    resume: bool,
    metrics: dict[str, Metric] | None,
    lock: rundir.RunLock,
) -> None:
    """Create the run directory (or resume it from checkpoints/last.pt) and lock it, its writer and the stats
    recorder."""
    cfg, group = training.cfg, training.group
    if resume:
        _restore(training, run_dir)
    elif training.is_main:
        run_dir = run_dir or rundir.new_run_dir(cfg.log.runs_dir, cfg.run_name())
        lock.acquire(run_dir)
    training.run_dir = run_dir
    writer = make_writer(
        run_dir,
        training.is_main,
        plots=cfg.log.plots,
        stats=cfg.log.stats,
        tensorboard=cfg.log.tensorboard,
        histograms=cfg.log.histograms,
    )
    training.writer = writer
    if resume:
        writer.resume(training.progress.start_epoch, cfg.to_yaml())
    else:
        meta = {**rundir.environment(training.device), "seed": cfg.train.seed}
        meta["threads"] = {"count": cfg.train.threads, "why": training.threads_why}
        if training.threads_why != "train.threads":  # chosen for this machine as it is now: say so
            training.reporter.note(f"threads: {cfg.train.threads} ({training.threads_why}; train.threads=N sets it)")
        if group.enabled:
            meta["distributed"] = group.describe()
        writer.start(cfg.to_yaml(), meta)
    progress = training.progress
    progress.kept = progress.start_epoch
    progress.train_seconds = sum(row["seconds"] for row in writer.rows if row["split"] == "train")
    custom_metrics = dict(metrics or {})
    if training.tasks is not None:  # each extra task's validation metric, every epoch
        custom_metrics.update(training.tasks.metrics(len(training.data.y_val) > 0, cfg.train.eval_batch_size))
    if training.transferred is not None and training.reporter.enabled:
        training.reporter.console.print(training.transferred.line(), highlight=False, soft_wrap=True)
    # Per-layer statistics and TensorBoard summaries on a few sampled steps; see kaizen.track.stats.
    training.recorder = StatsRecorder(
        training.model,
        cfg.log,
        training.steps_per_epoch,
        writer,
        custom_metrics,
        example=training.data.train_batch(
            torch.arange(min(2, len(training.data.y_train)), device=training.device)
        ),
    )


def _restore(training: _Training, run_dir: Path) -> None:
    """Load the weights and every stateful part (`_Training.resumable`) of `run_dir`'s last checkpoint."""
    cfg, progress = training.cfg, training.progress
    last = run_dir / "checkpoints" / "last.pt"
    state = rundir.load_checkpoint(last, training.device)
    load_model_state(training.model, state, last)
    progress.start_epoch = training.random_streams.epoch = int(state["epoch"])
    for key, part in training.resumable().items():
        part.load_state_dict(state[key])
    if progress.start_epoch >= cfg.train.epochs or training.monitor.should_stop:
        why = (
            "it stopped early" if training.monitor.should_stop else f"all {cfg.train.epochs} epochs are done"
        )
        raise KaizenError(f"nothing to resume in {run_dir}: {why}; to train longer add --set train.epochs=N")
    best_path = run_dir / "checkpoints" / "best.pt"
    if best_path.is_file():
        progress.best_state = rundir.load_checkpoint(best_path, training.device)["model"]


def _train(training: _Training, on_epoch: Callable[[int, dict[str, float]], None] | None) -> None:
    """The epochs, each its steps then its hooks; a failure or interruption is recorded in meta.json."""
    cfg, reporter, writer, recorder = training.cfg, training.reporter, training.writer, training.recorder
    progress = training.progress
    progress.epoch = progress.start_epoch
    reporter.start(cfg.train.epochs, training.steps_per_epoch, progress.start_epoch)
    try:
        if progress.start_epoch == 0:  # so that an interrupt in the first epoch resumes as if never stopped
            training.save_last(0)
        for epoch in range(progress.start_epoch, cfg.train.epochs):
            progress.epoch = epoch
            seconds, lr = _train_epoch(training, epoch)
            _end_epoch(training, epoch, seconds, lr, on_epoch)
            if training.monitor.should_stop:
                break
    except _Diverged as diverged:
        reporter.close()
        recorder.abort(diverged.epoch)
        message = (
            f"training diverged at epoch {diverged.epoch}, step {diverged.step}: loss is {diverged.loss}; "
            f"the last good checkpoint is kept; try {_divergence_advice(cfg)}"
        )
        writer.finish("failed", error=message)
        raise KaizenError(message) from None
    except Pruned as pruned:
        reporter.close()
        recorder.abort(progress.epoch + 1)
        writer.finish("pruned", error=str(pruned) or f"pruned after epoch {progress.epoch + 1}")
        raise
    except KeyboardInterrupt:
        reporter.close()
        writer.finish("stopped", error="interrupted; continue with kaizen train --resume")
        raise Interrupted(training.run_dir, progress.kept) from None
    except BaseException as error:
        reporter.close()
        reason = str(error) if isinstance(error, KaizenError) else f"{type(error).__name__}: {error}"
        writer.finish("failed", error=reason)
        raise
    reporter.close()
    training.penalties.remove()


def _train_epoch(training: _Training, epoch: int) -> tuple[dict[str, float], float]:
    """Train one epoch, the step inline; return (seconds by split, the learning rate of the last step).

    Sets `training.progress.metrics` to the epoch's train_loss and train_acc.
    """
    t = training
    cfg, data, group, device, recorder = t.cfg, t.data, t.group, t.device, t.recorder
    model, optimizer, schedule = t.model, t.optimizer, t.schedule
    batch_size, steps_per_epoch = t.batch_size, t.steps_per_epoch
    log_every = max(1, steps_per_epoch // 10)
    model.train()
    t.finetune.start_epoch(epoch)  # what trains this epoch; frozen batch norms stay in eval mode
    step_forward = t.parallel_forward()  # DDP (rebuilt if what trains changed), or the forward itself
    began = time.perf_counter()
    order = epoch_permutation(len(data.y_train), cfg.train.seed, epoch, device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    batches = [order[step * batch_size : (step + 1) * batch_size] for step in range(steps_per_epoch)]
    indices = [group.shard(index) for index in batches]  # data-parallel: this process's slice of each batch
    images = data.train_batches(indices)  # fetch: normalised on the device (streamed: one batch ahead)
    for step, (index, x) in enumerate(zip(indices, images)):
        global_batch = len(batches[step])
        batch = t.augment(x, data.y_train[index])  # augment
        recorder.before_forward(step)
        with t.autocast:
            logits = step_forward(batch.x).float()  # forward
        loss, total = t.objective(logits, batch, index, global_batch)  # the loss, assembled in one place
        optimizer.zero_grad(set_to_none=True)
        total.backward()  # backward
        recorder.after_backward(step)  # raw gradients, before clipping
        if cfg.train.clip_value is not None:  # clip
            nn.utils.clip_grad_value_(model.parameters(), cfg.train.clip_value)
        if cfg.train.clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
        lr = schedule.current_lr()  # the rate this step trains with; the epoch's row reports its last
        optimizer.step()  # step
        recorder.after_step(step)
        schedule.step()  # schedule
        loss_sum += loss.detach() * len(batch.y)  # record (on the device: no sync)
        correct += (logits.detach().argmax(1) == batch.y).sum()
        seen += len(batch.y)
        if (step + 1) % log_every == 0 or step + 1 == steps_per_epoch:
            # the one sync per logging interval (summed over data-parallel processes)
            total_loss, total_correct, total_seen = group.sum([loss_sum, correct, seen], device)
            mean_loss = total_loss / total_seen
            if not math.isfinite(mean_loss):
                raise _Diverged(epoch + 1, step + 1, mean_loss)
            t.reporter.step(epoch, step + 1, mean_loss, total_correct / total_seen, schedule.current_lr())
    t.progress.metrics = {"train_loss": total_loss / total_seen, "train_acc": total_correct / total_seen}
    group.sync_buffers(model)  # batch-norm statistics: the average over processes
    seconds = {"train": time.perf_counter() - began}
    t.progress.train_seconds += seconds["train"]
    return seconds, lr


def _end_epoch(
    training: _Training,
    epoch: int,
    seconds: dict[str, float],
    lr: float,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> None:
    """The epoch hooks, in order: validation, schedule, metrics.csv, statistics, early stopping and the best
    checkpoint, snapshot and last checkpoints, progress, the caller's `on_epoch`."""
    t = training
    cfg, data, writer, metrics = t.cfg, t.data, t.writer, t.progress.metrics
    done = epoch + 1  # epochs completed, 1-based as the run directory counts them
    if len(data.y_val):
        began = time.perf_counter()
        metrics["val_loss"], metrics["val_acc"] = evaluate_shared(
            t.group, t.model, data, "val", cfg.train.eval_batch_size
        )
        seconds["val"] = time.perf_counter() - began
        if not math.isfinite(metrics["val_loss"]):  # the epoch's last steps broke the weights
            raise _Diverged(done, t.steps_per_epoch, metrics["val_loss"])
    t.schedule.end_epoch(metrics.get("val_loss"))
    writer.log_epoch(
        [
            {
                "epoch": done,
                "split": split,
                "loss": metrics[f"{split}_loss"],
                "acc": metrics[f"{split}_acc"],
                "lr": lr,
                "seconds": seconds[split],
            }
            for split in seconds
        ]
    )
    t.recorder.end_epoch(done, data)
    if t.monitor.update(done, metrics):
        t.progress.best_state = copy.deepcopy(t.model.state_dict())
        writer.checkpoint("best", t.checkpoint_state(done, t.progress.best_state))
    cycle = t.schedule.cycle_ended(done)
    if cycle is not None:  # snapshot ensembles: the weights at the end of each cycle
        writer.checkpoint(f"snapshot-{cycle}", t.checkpoint_state(done, t.model.state_dict()))
    if done % cfg.checkpoint.every == 0 or done == cfg.train.epochs or t.monitor.should_stop:
        t.save_last(done)
    t.reporter.epoch_end(epoch, metrics)
    if on_epoch is not None:
        on_epoch(done, metrics)


def _finish(training: _Training) -> Path | None:
    """Restore the best weights if asked, score the test split and write summary.json; return the run dir."""
    t = training
    cfg, data, model, monitor, progress = t.cfg, t.data, t.model, t.monitor, t.progress
    ended_with = "last.pt"
    if cfg.early_stop.restore_best and progress.best_state is not None:
        model.load_state_dict(progress.best_state)
        ended_with = "best.pt"
    test_loss, test_acc = (
        evaluate_shared(t.group, model, data, "test", cfg.train.eval_batch_size)
        if cfg.train.score_test
        else (math.nan, math.nan)
    )
    completed = progress.epoch + 1
    n_train = len(data.y_train)
    summary = {
        "status": "done",
        "epochs_completed": completed,
        "stopped_early": monitor.should_stop,
        "checkpoint": ended_with,
        "monitor": monitor.name,
        "best_epoch": monitor.best_epoch,
        "best": monitor.best_metrics,
        "final": {key: round(value, 6) for key, value in progress.metrics.items()},
        **(
            {"test": {"loss": round(test_loss, 6), "acc": round(test_acc, 6), "n": len(data.y_test)}}
            if cfg.train.score_test
            else {}
        ),
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
            "train_seconds": round(progress.train_seconds, 3),
            "seconds_per_epoch": round(progress.train_seconds / max(completed, 1), 3),
            "images_per_second": round(n_train * completed / max(progress.train_seconds, 1e-9), 1),
        },
        "speed": fast.in_effect(model, t.train_in_effect, t.forward, t.optimizer, t.device, t.bf16),
    }
    if t.group.enabled:
        summary["distributed"] = t.group.describe()
    if t.tasks is not None and t.is_main and cfg.train.score_test:
        summary["tasks"] = t.tasks.evaluate(data.x_test, data.y_test, cfg.train.eval_batch_size)
    if t.transferred is not None:
        summary["transfer"] = t.transferred.to_dict()
    t.writer.finish("done", summary)
    return t.run_dir if t.is_main else None


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
    """The overrides to try after a divergence: a calmer rate (`calmer_lr`, the doctor's rule too), clipping,
    batch norm."""
    advice = [f"--set optim.lr={calmer_lr(cfg.optim):.3g}"]
    if cfg.train.clip_norm is None:
        advice.append("--set train.clip_norm=1.0")
    if cfg.model.norm == "none":
        advice.append("--set model.norm=batch")
    return " or ".join(advice)
