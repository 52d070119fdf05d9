"""The model: input encoding from the schema, a network, and a safe on-disk format.

The network is the built-in MLP (``builtin:mlp``) or the project's own module, named by an
entry point ``package.module:function`` called as ``function(input_width, output_width,
**settings)``. A saved model is a directory with ``weights.safetensors`` (tensors only) and
``model.json`` (entry point, settings, encoding, schema). Loading imports the entry point and
loads the tensors into what it builds: nothing is ever unpickled, so a model from the registry
cannot execute code on load beyond the project's own, named module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from aiinfra.project.config import ModelConfig
from aiinfra.project.entry_points import resolve
from aiinfra.project.schema import Schema, Task

WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "model.json"
FORMAT_VERSION = 2
BUILTIN_MLP = "builtin:mlp"


@dataclass
class Encoder:
    """Standardizes numeric features and one-hot encodes categorical ones (schema order).

    Categories are the declared ones, else those seen in training; an unseen category at
    prediction time encodes as all zeros."""

    numeric: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: Schema) -> Encoder:
        numeric = [f.name for f in schema.numeric]
        means = {n: float(frame[n].mean()) for n in numeric}
        stds = {n: float(frame[n].std(ddof=0)) or 1.0 for n in numeric}
        categories = {
            f.name: list(f.categories) or sorted(frame[f.name].dropna().astype(str).unique())
            for f in schema.categorical
        }
        return cls(numeric, means, stds, categories)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categories]

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories.values())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [name for name in self.columns if name not in frame]
        if missing:
            raise ValueError(f"input lacks feature columns: {', '.join(missing)}")
        columns = []
        for name in self.numeric:
            values = frame[name].to_numpy(dtype="float64")
            columns.append(((values - self.means[name]) / self.stds[name])[:, None])
        for name, vocab in self.categories.items():
            values = frame[name].astype(str).to_numpy()
            columns.append((values[:, None] == np.asarray(vocab)[None, :]).astype("float64"))
        encoded = np.concatenate(columns, axis=1).astype("float32")
        if not np.isfinite(encoded).all():
            raise ValueError("input has missing or non-finite feature values")
        return encoded


@dataclass
class Target:
    """How labels become what the network learns, and its outputs become answers."""

    task: Task
    classes: list[Any] = field(default_factory=list)
    mean: float = 0.0  # regression: the label is standardized for training
    std: float = 1.0

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: Schema) -> Target:
        if schema.task == "regression":
            y = frame[schema.label].to_numpy(dtype="float64")
            return cls("regression", [], float(y.mean()), float(y.std()) or 1.0)
        return cls(schema.task, list(schema.classes))

    @property
    def output_width(self) -> int:
        return len(self.classes) if self.task == "multiclass" else 1

    def encode(self, labels: pd.Series) -> np.ndarray:
        """float32 targets: 0/1 (binary), the class index (multiclass), standardized values."""
        if self.task == "regression":
            values: np.ndarray = labels.to_numpy(dtype="float64")
            return np.asarray((values - self.mean) / self.std, dtype="float32")
        index = {c: i for i, c in enumerate(self.classes)}
        try:
            return np.asarray([index[v] for v in labels.tolist()], dtype="float32")
        except KeyError as exc:
            raise ValueError(f"label value {exc.args[0]!r} is not one of {self.classes}") from exc

    def loss(self, outputs: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        if self.task == "multiclass":
            return nn.functional.cross_entropy(outputs.float(), y.long(), reduction=reduction)
        flat = outputs.float().reshape(-1)
        if self.task == "binary":
            return nn.functional.binary_cross_entropy_with_logits(flat, y, reduction=reduction)
        return nn.functional.mse_loss(flat, y, reduction=reduction)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """P(positive) (binary), class probabilities (multiclass) or values (regression)."""
        if self.task == "multiclass":
            return torch.softmax(outputs.float(), dim=-1).cpu().numpy().astype("float64")
        flat = outputs.float().reshape(-1)
        if self.task == "binary":
            return torch.sigmoid(flat).cpu().numpy().astype("float64")
        return (flat.cpu().numpy().astype("float64") * self.std) + self.mean


class MLP(nn.Module):
    """The built-in network: ReLU layers with dropout, one output per ``output_width``."""

    def __init__(
        self,
        input_width: int,
        output_width: int,
        hidden_sizes: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_width
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, output_width))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


MLP_SETTINGS = {"hidden_sizes", "dropout"}


def build_network(
    model: ModelConfig, input_width: int, output_width: int, root: Path | None = None
) -> nn.Module:
    """The configured network, freshly initialised."""
    if model.entry_point == BUILTIN_MLP:
        unknown = sorted(set(model.settings) - MLP_SETTINGS)
        if unknown:
            raise ValueError(
                f"model.settings: {', '.join(unknown)} not known to builtin:mlp "
                f"(it takes {', '.join(sorted(MLP_SETTINGS))})"
            )
        return MLP(input_width, output_width, **model.settings)
    factory = resolve(model.entry_point, root, setting="model.entry_point")
    network = factory(input_width, output_width, **model.settings)
    if not isinstance(network, nn.Module):
        raise TypeError(
            f"model.entry_point: {model.entry_point} returned {type(network).__name__}, "
            "not a torch.nn.Module"
        )
    return network


def trusted_entry_points(model: ModelConfig) -> set[str]:
    """The code a model from the registry may name: the built-in network or the project's."""
    return {BUILTIN_MLP, model.entry_point}


def _check_weights_fit(
    model: ModelConfig, input_width: int, output_width: int, root: Path | None, weights: Path
) -> None:
    """Compare the network the spec describes, built on the meta device (no memory), with the
    tensor shapes in the weights file's header, before anything is allocated: a spec that
    asks for a huge network, or weights of another one, is refused up front."""
    with safe_open(str(weights), framework="pt") as stored_file:
        stored = {k: tuple(stored_file.get_slice(k).get_shape()) for k in stored_file.keys()}  # noqa: SIM118
    with torch.device("meta"):
        skeleton = build_network(model, input_width, output_width, root)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != stored:
        differ = sorted(
            k for k in expected.keys() | stored.keys() if expected.get(k) != stored.get(k)
        )
        shown = ", ".join(
            f"{k}: spec {expected.get(k)} vs weights {stored.get(k)}" for k in differ[:5]
        )
        raise ValueError(f"{weights}: the weights do not fit the network of the spec ({shown})")


def check_network(
    model: ModelConfig, input_width: int, output_width: int, root: Path | None = None
) -> None:
    """Build the network and run two rows through it; raise ValueError unless it answers one
    row of ``output_width`` outputs per input row."""
    try:
        network = build_network(model, input_width, output_width, root)
        network.eval()
        with torch.inference_mode():
            out = network(torch.zeros(2, input_width))
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"model.entry_point {model.entry_point}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.numel() != 2 * output_width:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model.entry_point {model.entry_point}: for 2 input rows it answered {shape}; "
            f"the task needs {output_width} output(s) per row"
        )


@dataclass
class TabularModel:
    """A trained network with its encoding: what gets saved, registered and served."""

    model: ModelConfig
    encoder: Encoder
    target: Target
    network: nn.Module
    schema: Schema
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.target.task

    @property
    def classes(self) -> list[Any]:
        return self.target.classes

    def outputs(self, frame: pd.DataFrame) -> torch.Tensor:
        x = torch.from_numpy(self.encoder.transform(frame))
        self.network.eval()
        with torch.inference_mode():
            device = next(self.network.parameters()).device
            out: torch.Tensor = self.network(x.to(device))
        return out.reshape(len(x), -1)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(positive class) per row (binary), an (n, classes) matrix of probabilities
        (multiclass), or the predicted value (regression)."""
        return self.target.decode(self.outputs(frame))

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        description = {
            "format_version": FORMAT_VERSION,
            "entry_point": self.model.entry_point,
            "settings": self.model.settings,
            "input_width": self.encoder.width,
            "output_width": self.target.output_width,
            "encoder": asdict(self.encoder),
            "target": asdict(self.target),
            "schema": self.schema.to_dict(),
            "metadata": self.metadata,
        }
        (directory / SPEC_FILE).write_text(json.dumps(description, indent=2, default=str))
        return directory

    @classmethod
    def load(
        cls, directory: Path, root: Path | None = None, trusted: set[str] | None = None
    ) -> TabularModel:
        """Rebuild a saved model; ``root`` is where a project's own entry point imports from.

        ``trusted``: the entry points a model from elsewhere (the registry) may name; the
        saved spec names code to import, so one from outside must name code we expect."""
        spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
        if not spec_path.exists() or not weights_path.exists():
            raise FileNotFoundError(
                f"{directory} is not a saved model (needs {SPEC_FILE} and {WEIGHTS_FILE})"
            )
        d = json.loads(spec_path.read_text())
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{spec_path}: unsupported model format {d.get('format_version')!r}")
        encoder, schema = Encoder(**d["encoder"]), Schema.from_dict(d["schema"])
        # An encoding for other features than the schema's, or of another width than the
        # weights', would only fail (or mislead) at the first prediction: refuse it here.
        if sorted(encoder.columns) != sorted(schema.feature_names) or (
            encoder.width != d["input_width"]
        ):
            raise ValueError(
                f"{spec_path}: the encoding is for other features ({', '.join(encoder.columns)}; "
                f"width {encoder.width}) than the schema ({', '.join(schema.feature_names)}) "
                f"and the weights (input width {d['input_width']})"
            )
        model = ModelConfig(entry_point=d["entry_point"], settings=d["settings"])
        if trusted is not None and model.entry_point not in trusted:
            raise ValueError(
                f"{spec_path}: entry point {model.entry_point!r} is not one this project uses "
                f"({', '.join(sorted(trusted))})"
            )
        _check_weights_fit(model, d["input_width"], d["output_width"], root, weights_path)
        network = build_network(model, d["input_width"], d["output_width"], root)
        network.load_state_dict(load_file(str(weights_path)))
        network.eval()
        return cls(model, encoder, Target(**d["target"]), network, schema, d.get("metadata", {}))
