"""Checkpoints of a training run: written atomically, read back safely, pruned as it goes.

A checkpoint holds everything the next epoch depends on (model, optimizer, scheduler, every RNG
state, the epoch counter and the loop's own state), so a run killed at any moment and started
again continues as if it had never stopped: on CPU with deterministic settings it ends with
bit-identical weights and metrics.

Files live under ``<dir>/<fingerprint>/epoch-NNNNN.pt``. The fingerprint hashes everything the
result depends on (training settings, data, number of ranks), so a run never resumes from
another run's state. A file is written to a temporary name, flushed to disk and renamed: a kill
mid-write leaves the previous checkpoint intact and only a temporary file, which is ignored.
Loading uses ``torch.load(weights_only=True)``: tensors and plain containers, no code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiinfra.training import distributed

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_NAME = re.compile(r"^epoch-(\d{5})\.pt$")


def fingerprint(settings: dict[str, Any], *tensors: torch.Tensor, world_size: int = 1) -> str:
    """Hash of what a run's result depends on: its settings, its data, its number of ranks."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(f"world={world_size}".encode())
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CheckpointStore:
    """The checkpoints of one run (one fingerprint)."""

    directory: Path
    keep: int = 2

    @classmethod
    def for_run(cls, root: Path, run_fingerprint: str, keep: int = 2) -> CheckpointStore:
        return cls(root / run_fingerprint, keep)

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:05d}.pt"

    def epochs(self) -> list[int]:
        """Epochs with a complete checkpoint file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        """Write atomically (temp file, fsync, rename, fsync the directory), then prune."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(epoch)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, "epoch": epoch, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        for old in self.epochs()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return final

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; a damaged file is skipped with a warning."""
        for epoch in reversed(self.epochs()):
            try:
                state: dict[str, Any] = torch.load(
                    self.path(epoch), map_location="cpu", weights_only=True
                )
            except Exception as exc:  # a damaged file must not stop the run from resuming
                log.warning("skipping unreadable checkpoint %s: %s", self.path(epoch), exc)
                continue
            if state.get("format_version") == FORMAT_VERSION:
                return state
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random stream the loop may draw from, as tensors and plain values."""
    np_name, np_keys, np_pos, np_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "shuffle": shuffle.get_state(),
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            np_pos,
            np_gauss,
            np_cached,
        ],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        # This rank's own GPU only: reading every device's state would open a CUDA context
        # on each GPU of the node from each rank.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    name, keys, pos, gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# Training settings that do not change the result: a run may be resumed with other values.
RESULT_INDEPENDENT = {
    "progress",
    "checkpoint_every_epochs",
    "checkpoint_dir",
    "keep_checkpoints",
    "accelerator_type",
    "accelerator_limit",
    "cpu_request",
    "memory_request",
    "price_per_device_hour",
    "search",
    "nproc_per_node",  # the number of ranks is hashed as such
}


@dataclass(frozen=True)
class RunParts:
    """The stateful objects of a training run, besides the loop's own state."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    shuffle: torch.Generator


def save_run(
    store: CheckpointStore | None,
    epoch: int,
    parts: RunParts,
    loop: dict[str, Any],
    ctx: distributed.Context,
) -> None:
    """Checkpoint after ``epoch`` epochs. Every rank hands over its RNG state (a collective
    call, so all ranks must call this); rank 0 writes."""
    rng = distributed.gather(rng_state(parts.shuffle), ctx)
    if store is None or not ctx.is_main:
        return
    state = {
        "model": parts.network.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler else None,
        "rng": rng,
        "loop": loop,
    }
    store.save(epoch, state)


def load_run(
    store: CheckpointStore | None, parts: RunParts, ctx: distributed.Context
) -> dict[str, Any] | None:
    """Restore ``parts`` from the last checkpoint; returns the loop's state, or None when
    there is none. Rank 0 picks the checkpoint; every rank loads that one (so a shared
    directory is needed across nodes)."""
    if store is None:
        return None
    state = store.latest() if ctx.is_main else None
    epoch = distributed.broadcast(state["epoch"] if state else 0, ctx)
    if epoch == 0:
        return None
    if state is None:
        state = torch.load(store.path(epoch), map_location="cpu", weights_only=True)
    parts.network.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"][ctx.rank], parts.shuffle)
    if ctx.is_main:
        log.info("resuming from %s", store.path(epoch))
    loop: dict[str, Any] = state["loop"]
    return loop
