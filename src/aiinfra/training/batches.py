"""The tabular data path: mini-batches sliced from tensors already on the device.

Nothing is built row by row: one gather per epoch puts the rows in that epoch's order, and each
batch is then a slice of it (a view: no copy). ``benchmarks/training.py`` compares this with raw
tensor slicing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from aiinfra.training import distributed


class Batches:
    """Shuffled mini-batches as views of tensors already on the device.

    One gather per epoch puts the rows in that epoch's order; each batch is then a slice (no
    copy, no per-row work), and each rank keeps its part of every global batch.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, ctx: distributed.Context
    ) -> None:
        self.x, self.y, self.batch_size, self.ctx = x, y, batch_size, ctx

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """(this rank's x, its y, rows in the global batch) for each batch of one epoch."""
        order = torch.randperm(len(self.x), generator=generator).to(self.x.device)
        xs, ys = self.x[order], self.y[order]
        for start in range(0, len(xs), self.batch_size):
            rows = min(self.batch_size, len(xs) - start)
            lo, hi = distributed.shard_bounds(rows, self.ctx)
            yield xs[start + lo : start + hi], ys[start + lo : start + hi], rows
