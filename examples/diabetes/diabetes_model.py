"""The diabetes example's own network: a linear path plus a small residual MLP.

Named in the profile as ``model: {entry_point: "diabetes_model:build", settings: {...}}``; the
platform calls ``build(input_width, output_width, **settings)``, trains what it returns, saves
its tensors (safetensors) with the entry point and settings (JSON), and rebuilds it by calling
this function again when the registry's version is loaded: the module is imported, never
unpickled. On 442 patients a mostly linear relation with a little curvature is what the data
supports, hence the linear path the MLP only corrects.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.body(x)
        return out


class LinearPlusResidual(nn.Module):
    """``linear(x) + head(blocks(stem(x)))``: a linear model the residual MLP corrects."""

    def __init__(
        self, input_width: int, output_width: int, width: int, blocks: int, dropout: float
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(input_width, output_width)
        self.stem = nn.Linear(input_width, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(blocks)))
        self.head = nn.Linear(width, output_width)
        nn.init.zeros_(self.head.weight)  # starts as the linear model
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) + self.head(self.blocks(self.stem(x)))
        return out


def build(
    input_width: int, output_width: int, width: int = 32, blocks: int = 2, dropout: float = 0.1
) -> nn.Module:
    """The profile's ``model.entry_point``."""
    if width < 1 or blocks < 0 or not 0 <= dropout < 1:
        raise ValueError(
            f"width >= 1, blocks >= 0, 0 <= dropout < 1; got {width}, {blocks}, {dropout}"
        )
    return LinearPlusResidual(input_width, output_width, width, blocks, dropout)
