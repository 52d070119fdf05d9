"""One training job: train on a training-set file, save the model, summarize what happened.

The train step (in one process, or in every rank under torchrun: :mod:`.launcher`) calls
:func:`train_to_directory`; the :class:`TrainingSummary` it returns crosses to the register
step as JSON and back, typed on both sides.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiinfra.project.config import PlatformConfig

# The summary crosses to tasks that train nothing (registration reads it back): torch and the
# training loop are imported where a model is trained.
if TYPE_CHECKING:
    from aiinfra.training import train


@dataclass(frozen=True)
class TrainingSummary:
    device: str
    precision: str
    world_size: int
    train_seconds: float
    samples_per_second: float
    train_loss: float
    val_loss: float
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    train_rows: int
    usage: dict[str, Any] = field(default_factory=dict)  # telemetry: time, memory, energy, cost
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # the search's overrides
    search_run_id: str | None = None

    def metrics(self) -> dict[str, float]:
        """The numbers, for MLflow and the Kubeflow UI (per-epoch series are apart)."""
        scalars = {k: v for k, v in asdict(self).items() if k not in ("usage", "history")}
        scalars.update(self.usage)
        return {
            k: float(v)
            for k, v in scalars.items()
            if isinstance(v, int | float) and not isinstance(v, str)
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: str) -> TrainingSummary:
        return cls(**json.loads(payload))


def checkpoint_dir_for(config: PlatformConfig, model_dir: Path) -> Path:
    """Configured, or beside the model output: the run's own artifact location."""
    return config.training.checkpoint_dir or model_dir.parent / f"{model_dir.name}-checkpoints"


def train_to_directory(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    checkpoint_dir: Path | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> TrainingSummary:
    """Train on the training part of the set; rank 0 saves the model."""
    from aiinfra.data.training_set import read_training_set
    from aiinfra.training import distributed, search, train

    overrides = hyperparameters or {}
    training, model = search.with_overrides(config.training, config.model, overrides)
    frame, schema = read_training_set(training_set)
    train_part, _ = train.split_by_time(frame, training.eval_fraction, schema)
    result = train.train(
        train_part, schema, training, model, checkpoint_dir, root=config.project.root
    )
    if distributed.from_env().is_main:
        result.model.save(model_dir)
    return summarize(result, len(train_part), overrides)


def summarize(
    result: train.TrainResult, train_rows: int, hyperparameters: dict[str, Any]
) -> TrainingSummary:
    chosen = result.history[result.model_epoch]
    return TrainingSummary(
        device=result.device,
        precision=result.precision,
        world_size=result.world_size,
        train_seconds=round(result.seconds, 3),
        samples_per_second=round(result.samples_per_second, 1),
        train_loss=chosen["train_loss"],
        val_loss=chosen["val_loss"],
        best_val_loss=min(row["val_loss"] for row in result.history),
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        stopped_early=result.stopped_early,
        resumed_from_epoch=result.resumed_from_epoch,
        train_rows=train_rows,
        usage=dict(result.usage),
        history=result.history,
        hyperparameters=hyperparameters,
    )
