"""The model: input encoding from the schema, an MLP, and a safe on-disk format.

A saved model is a directory with ``weights.safetensors`` (tensors only) and ``model.json``
(architecture and encoding statistics). Loading rebuilds the network with our own code and
never unpickles anything, so a model from the registry cannot execute code on load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aiinfra import schema

WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "model.json"
FORMAT_VERSION = 1


@dataclass
class Encoder:
    """Standardizes numeric features and one-hot encodes categorical ones (schema order)."""

    means: dict[str, float]
    stds: dict[str, float]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Encoder:
        means = {f.name: float(frame[f.name].mean()) for f in schema.NUMERIC}
        stds = {f.name: float(frame[f.name].std(ddof=0)) or 1.0 for f in schema.NUMERIC}
        categories = {f.name: list(f.categories) for f in schema.CATEGORICAL}
        return cls(means, stds, categories)

    @property
    def width(self) -> int:
        return len(self.means) + sum(len(c) for c in self.categories.values())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [name for name in schema.FEATURE_NAMES if name not in frame]
        if missing:
            raise ValueError(f"input lacks feature columns: {', '.join(missing)}")
        columns = []
        for f in schema.NUMERIC:
            values = frame[f.name].to_numpy(dtype="float64")
            columns.append(((values - self.means[f.name]) / self.stds[f.name])[:, None])
        for f in schema.CATEGORICAL:
            values = frame[f.name].astype(str).to_numpy()
            vocab = np.asarray(self.categories[f.name])
            columns.append((values[:, None] == vocab[None, :]).astype("float64"))
        encoded = np.concatenate(columns, axis=1).astype("float32")
        if not np.isfinite(encoded).all():
            raise ValueError("input has missing or non-finite feature values")
        return encoded


@dataclass
class MLPSpec:
    """Shape of the network; saved next to the weights."""

    n_inputs: int
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1


class MLP(nn.Module):
    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = spec.n_inputs
        for hidden in spec.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(spec.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x).squeeze(-1)
        return logits


@dataclass
class LoanModel:
    """A trained network with the encoder it was trained with: what gets saved and served."""

    spec: MLPSpec
    encoder: Encoder
    network: MLP
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of default for each row of ``frame`` (must hold every feature)."""
        x = torch.from_numpy(self.encoder.transform(frame))
        self.network.eval()
        with torch.inference_mode():
            device = next(self.network.parameters()).device
            logits = self.network(x.to(device))
        return torch.sigmoid(logits).cpu().numpy().astype("float64")

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        description = {
            "format_version": FORMAT_VERSION,
            "spec": asdict(self.spec),
            "encoder": asdict(self.encoder),
            "features": list(schema.FEATURE_NAMES),
            "metadata": self.metadata,
        }
        (directory / SPEC_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: Path) -> LoanModel:
        spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
        if not spec_path.exists() or not weights_path.exists():
            raise FileNotFoundError(
                f"{directory} is not a saved model (needs {SPEC_FILE} and {WEIGHTS_FILE})"
            )
        description = json.loads(spec_path.read_text())
        if description.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{spec_path}: unsupported model format {description.get('format_version')!r}"
            )
        if description["features"] != list(schema.FEATURE_NAMES):
            raise ValueError(f"{spec_path}: trained on other features than the declared schema")
        spec = MLPSpec(**description["spec"])
        network = MLP(spec)
        network.load_state_dict(load_file(str(weights_path)))
        network.eval()
        return cls(
            spec, Encoder(**description["encoder"]), network, description.get("metadata", {})
        )
