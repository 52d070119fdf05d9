"""Training: one loop for a CPU, a CUDA GPU or several data-parallel processes.

The device comes from the config (``auto``: CUDA when present). What differs on CUDA (bf16
autocast, pinned memory, ``torch.compile``) is decided in :mod:`.hardware`; ranks and gradient
averaging in :mod:`.distributed`; checkpoints in :mod:`.checkpoint`.
The data is moved to the device once; batches are views of it (see :class:`Batches`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from aiinfra.project.config import ModelConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.training import distributed, hardware, telemetry
from aiinfra.training.batches import Batches
from aiinfra.training.checkpoint import (
    RESULT_INDEPENDENT,
    CheckpointStore,
    RunParts,
    fingerprint,
    load_run,
    save_run,
)
from aiinfra.training.hardware import Precision
from aiinfra.training.hardware import select_device as select_device  # callers know it from here
from aiinfra.training.model import Encoder, TabularModel, Target, build_network

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, float]], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> summed


def split_by_time(
    frame: pd.DataFrame, eval_fraction: float, schema: Schema
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Oldest rows train, newest rows evaluate: the model is judged on the future it will see.

    Ties on the timestamp are broken by the row id (or the entity keys), so the split is a
    pure function of the data.
    """
    ties = [schema.row_id] if schema.row_id else list(schema.entity_names)
    ordered = frame.sort_values([schema.timestamp, *ties], kind="stable")
    n_eval = max(1, round(len(ordered) * eval_fraction))
    if n_eval >= len(ordered):
        raise ValueError(f"cannot hold out {n_eval} of {len(ordered)} rows for evaluation")
    return ordered.iloc[:-n_eval].reset_index(drop=True), ordered.iloc[-n_eval:].reset_index(
        drop=True
    )


@dataclass
class TrainResult:
    model: TabularModel
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0
    samples_per_second: float = 0.0
    precision: str = "fp32"
    world_size: int = 1
    best_epoch: int = 0
    model_epoch: int = 0  # the epoch whose weights the model has (best one if early stopping)
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    usage: dict[str, Any] = field(default_factory=dict)


def train_step(
    runner: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_scale: float,
    loss_fn: LossFn,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """One optimizer step; returns the batch's summed loss, detached and left on the device
    (reading it would wait for the GPU at every step)."""
    optimizer.zero_grad(set_to_none=True)
    with hardware.autocast(x.device, precision):
        outputs = runner(x)
    loss_sum = loss_fn(outputs.reshape(len(x), -1), y)
    (loss_sum * loss_scale).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss_sum.detach()


@torch.inference_mode()
def eval_step(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """Summed loss over the rows, in chunks so a large validation set fits in memory."""
    network.eval()
    total = torch.zeros((), device=x.device)
    for xs, ys in zip(torch.split(x, 65_536), torch.split(y, 65_536), strict=True):
        with hardware.autocast(x.device, precision):
            outputs = network(xs)
        total += loss_fn(outputs.reshape(len(xs), -1), ys)
    return total


@dataclass
class Loop:
    """What the loop carries from epoch to epoch: what a checkpoint saves besides the model."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False

    def observe(self, val_loss: float, network: nn.Module, config: TrainingConfig) -> None:
        """Track the best epoch; stop after ``early_stopping_patience`` epochs without gain."""
        if val_loss < self.best_val - config.early_stopping_min_delta:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, self.epoch, 0
            if config.early_stopping_patience:
                self.best_weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            self.bad_epochs += 1
        patience = config.early_stopping_patience
        self.stopped_early = bool(patience) and self.bad_epochs >= patience


@dataclass
class Setup:
    """Everything one training run's loop works with."""

    network: nn.Module  # the plain module: what is saved and evaluated
    runner: nn.Module  # what trains: the network, wrapped in DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    batches: Batches
    x_watch: torch.Tensor
    y_watch: torch.Tensor
    config: TrainingConfig
    ctx: distributed.Context
    precision: Precision
    shuffle: torch.Generator
    loss_fn: LossFn
    store: CheckpointStore | None = None

    @property
    def parts(self) -> RunParts:
        return RunParts(self.network, self.optimizer, self.scheduler, self.shuffle)


def prepare(
    network: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    config: TrainingConfig,
    ctx: distributed.Context,
    loss_fn: LossFn,
    checkpoint_dir: Path | None = None,
    network_settings: dict[str, Any] | None = None,
) -> Setup:
    """Optimizer, schedule, wrappers and checkpoint store around a network already on its
    device; ``data`` is (x, y, x_watch, y_watch) on that device."""
    x, y, x_watch, y_watch = data
    device = x.device
    precision = hardware.resolve_precision(config.precision, device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = None
    if config.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    runner = hardware.maybe_compile(distributed.wrap(network, ctx, device), config.compile, device)
    if ctx.distributed:  # every rank starts from rank 0's weights (DDP broadcast them)
        torch.manual_seed(config.seed + ctx.rank)  # but draws its own dropout masks
    store = None
    if checkpoint_dir is not None and config.checkpoint_every_epochs:
        settings = config.model_dump(exclude=RESULT_INDEPENDENT, mode="json")
        settings |= {"device_type": device.type, "resolved_precision": precision}
        settings |= {"network": network_settings or {}}
        run = fingerprint(settings, *data, world_size=ctx.world_size)
        store = CheckpointStore.for_run(checkpoint_dir, run, config.keep_checkpoints)
    return Setup(
        network=network,
        runner=runner,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=Batches(x, y, config.batch_size, ctx),
        x_watch=x_watch,
        y_watch=y_watch,
        config=config,
        ctx=ctx,
        precision=precision,
        shuffle=torch.Generator(device="cpu").manual_seed(config.seed),
        loss_fn=loss_fn,
        store=store,
    )


def _run_epoch(s: Setup) -> float:
    """Train one epoch; the loss is the mean over global batches of their mean loss."""
    s.runner.train()
    sums, rows = [], []
    for xb, yb, global_rows in s.batches.epoch(s.shuffle):
        scale = s.ctx.world_size / global_rows  # DDP averages over ranks: see distributed.py
        sums.append(train_step(s.runner, s.optimizer, xb, yb, scale, s.loss_fn, s.precision))
        rows.append(global_rows)
    if s.scheduler is not None:
        s.scheduler.step()
    batch_sums = distributed.all_reduce(torch.stack(sums), s.ctx)
    return float((batch_sums / torch.tensor(rows, device=batch_sums.device)).mean())


def _validate(s: Setup) -> float:
    lo, hi = distributed.shard_bounds(len(s.x_watch), s.ctx)
    x_part, y_part = s.x_watch[lo:hi], s.y_watch[lo:hi]
    total = eval_step(s.network, x_part, y_part, s.loss_fn, s.precision).clone()
    return float(distributed.all_reduce(total, s.ctx)) / len(s.x_watch)


def _show_progress(setting: str, ctx: distributed.Context) -> bool:
    if setting != "auto":
        return setting == "on" and ctx.is_main
    return ctx.is_main and sys.stderr.isatty() and not os.environ.get("CI")


def fit(s: Setup, on_epoch: EpochCallback | None = None) -> tuple[Loop, int, float]:
    """Run (or resume) the epochs; returns the loop state, the epoch it resumed from and the
    seconds this process spent in epochs."""
    state = load_run(s.store, s.parts, s.ctx)
    loop = Loop(**state) if state is not None else Loop()
    resumed_from, every, config = loop.epoch, s.config.checkpoint_every_epochs, s.config
    bar = tqdm(
        total=config.epochs,
        initial=loop.epoch,
        unit="epoch",
        desc="training",
        disable=not _show_progress(config.progress, s.ctx),
    )
    started = time.perf_counter()
    try:
        while loop.epoch < config.epochs and not loop.stopped_early:
            epoch_started = time.perf_counter()
            lr = float(s.optimizer.param_groups[0]["lr"])
            train_loss = _run_epoch(s)
            val_loss = _validate(s)
            row = {
                "epoch": float(loop.epoch),
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "epoch_seconds": time.perf_counter() - epoch_started,
            }
            loop.history.append(row)
            loop.observe(val_loss, s.network, config)
            loop.epoch += 1
            if s.store is not None and (loop.epoch % every == 0 or loop.stopped_early):
                save_run(s.store, loop.epoch, s.parts, vars(loop), s.ctx)
            bar.update(1)
            bar.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}")
            if s.ctx.is_main:
                log.debug("epoch %d %s", loop.epoch - 1, row)
            if on_epoch is not None:
                on_epoch(row)
    finally:
        bar.close()
    hardware.synchronize(s.batches.x.device)
    if loop.best_weights is not None:  # early stopping: keep the best epoch's weights
        s.network.load_state_dict(loop.best_weights)
    return loop, resumed_from, time.perf_counter() - started


def train(
    frame: pd.DataFrame,
    schema: Schema,
    config: TrainingConfig,
    model: ModelConfig,
    checkpoint_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    root: Path | None = None,
) -> TrainResult:
    """Fit the encoder and the network on ``frame``; its newest rows steer only the validation
    loss (early stopping, the search). Under torchrun, each rank calls this with the same data.
    ``root`` is where the project's own model entry point imports from."""
    ctx = distributed.from_env()
    device = select_device(config.device, ctx.local_rank)
    distributed.init(ctx, device)
    hardware.set_determinism(config.deterministic, device)
    hardware.set_cpu_threads(config.cpu_threads, device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    fit_part, watch_part = split_by_time(frame, config.eval_fraction, schema)
    encoder, target = Encoder.fit(fit_part, schema), Target.fit(fit_part, schema)
    network = build_network(model, encoder.width, target.output_width, root).to(device)
    data = (
        *_tensors(encoder, target, fit_part, schema, device),
        *_tensors(encoder, target, watch_part, schema, device),
    )
    network_settings = {"entry_point": model.entry_point, **model.settings}
    setup = prepare(network, data, config, ctx, target.loss, checkpoint_dir, network_settings)
    meter = telemetry.Meter(device).start()
    loop, resumed_from, seconds = fit(setup, on_epoch)
    parts = distributed.gather(meter.stop(), ctx)
    usage = telemetry.combine(parts, config.price_per_device_hour)
    epochs_run = len(loop.history) - resumed_from
    throughput = len(data[0]) * epochs_run / seconds if seconds > 0 else 0.0
    metadata = {"device": str(device), "epochs": config.epochs, "precision": setup.precision}
    trained = TabularModel(model, encoder, target, network.cpu().eval(), schema, metadata)
    model_epoch = loop.best_epoch if loop.best_weights is not None else loop.epoch - 1
    return TrainResult(trained, loop.history, str(device), seconds, throughput, setup.precision,
                       ctx.world_size, loop.best_epoch, model_epoch, loop.stopped_early,
                       resumed_from, usage)  # fmt: skip


def _tensors(
    encoder: Encoder, target: Target, frame: pd.DataFrame, schema: Schema, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(encoder.transform(frame))
    y = torch.from_numpy(target.encode(frame[schema.label]))
    return hardware.to_device(x, device), hardware.to_device(y, device)
