"""Training: the same loop on CPU or CUDA, batches sliced from tensors on the device."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from aiinfra import schema
from aiinfra.config import TrainingConfig
from aiinfra.model import MLP, Encoder, LoanModel, MLPSpec

log = logging.getLogger(__name__)


def select_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def split_by_time(frame: pd.DataFrame, eval_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Oldest rows train, newest rows evaluate: the model is judged on the future it will see.

    Ties on the timestamp are broken by loan id, so the split is a pure function of the data.
    """
    ordered = frame.sort_values([schema.EVENT_TIMESTAMP, schema.LOAN_ID], kind="stable")
    n_eval = max(1, round(len(ordered) * eval_fraction))
    if n_eval >= len(ordered):
        raise ValueError(f"cannot hold out {n_eval} of {len(ordered)} rows for evaluation")
    return ordered.iloc[:-n_eval].reset_index(drop=True), ordered.iloc[-n_eval:].reset_index(
        drop=True
    )


@dataclass
class TrainResult:
    model: LoanModel
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0
    samples_per_second: float = 0.0


def train_step(
    network: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    network.train()
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.binary_cross_entropy_with_logits(network(x), y)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach())


@torch.inference_mode()
def eval_step(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    network.eval()
    return float(nn.functional.binary_cross_entropy_with_logits(network(x), y))


def train(frame: pd.DataFrame, config: TrainingConfig) -> TrainResult:
    """Fit the encoder and the MLP on ``frame``; the newest rows of it steer nothing but the log."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = select_device(config.device)
    fit_part, watch_part = split_by_time(frame, config.eval_fraction)
    encoder = Encoder.fit(fit_part)
    spec = MLPSpec(encoder.width, list(config.hidden_sizes), config.dropout)
    network = MLP(spec).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x, y = _tensors(encoder, fit_part, device)
    x_watch, y_watch = _tensors(encoder, watch_part, device)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        losses = [
            train_step(network, optimizer, x[idx], y[idx])
            for idx in torch.split(order, config.batch_size)
        ]
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": eval_step(network, x_watch, y_watch),
            }
        )
        log.debug("epoch %d %s", epoch, history[-1])
    seconds = time.perf_counter() - started
    model = LoanModel(
        spec, encoder, network.cpu().eval(), {"device": str(device), "epochs": config.epochs}
    )
    throughput = len(x) * config.epochs / seconds if seconds > 0 else 0.0
    return TrainResult(model, history, str(device), seconds, throughput)


def _tensors(
    encoder: Encoder, frame: pd.DataFrame, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(encoder.transform(frame))
    y = torch.from_numpy(frame[schema.LABEL].to_numpy(dtype="float32"))
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
            device, non_blocking=True
        )
    return x, y
