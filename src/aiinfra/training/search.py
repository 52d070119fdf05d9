"""Hyper-parameter search: Optuna trials over training settings, each an MLflow child run.

A trial trains on the training part of the set exactly as the train step does, and is scored
by its best validation loss on the newest rows of that part: the held-out evaluation rows stay
unseen, for the comparison with the champion. The sampler (TPE) is seeded from
``training.seed`` and training is deterministic, so the same data and config give the same
trials and the same winner. A median pruner stops a trial whose validation loss at an epoch is
worse than the median of the earlier trials at that epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aiinfra.project.config import ModelConfig, SearchConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.training import train
from aiinfra.training.model import BUILTIN_MLP, MLP_SETTINGS

log = logging.getLogger(__name__)


def with_overrides(
    training: TrainingConfig, model: ModelConfig, overrides: dict[str, Any]
) -> tuple[TrainingConfig, ModelConfig]:
    """The settings with ``overrides`` applied, validated like a loaded config: training's own
    fields go to ``training``, the rest (hidden sizes, dropout) to the model's settings."""
    if not overrides:
        return training, model
    own = {k: v for k, v in overrides.items() if k in TrainingConfig.model_fields}
    network = {k: v for k, v in overrides.items() if k not in own}
    if network and model.entry_point != BUILTIN_MLP:
        unknown = ", ".join(sorted(network))
        raise ValueError(f"unknown training settings: {unknown}")
    if set(network) - MLP_SETTINGS:
        raise ValueError(
            f"unknown training settings: {', '.join(sorted(set(network) - MLP_SETTINGS))}"
        )
    trained = TrainingConfig.model_validate({**training.model_dump(), **own})
    return trained, model.model_copy(update={"settings": {**model.settings, **network}})


def _label(sizes: list[int]) -> str:
    return "x".join(str(s) for s in sizes)


def suggest(trial: Any, space: SearchConfig, builtin: bool = True) -> dict[str, Any]:
    """One point of the search space (hidden sizes by label: Optuna's choices are scalars).
    The network's own settings are searched only for the built-in MLP."""
    point: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay, log=True),
    }
    if builtin:
        shapes = {_label(s): s for s in space.hidden_sizes}
        point["dropout"] = trial.suggest_float("dropout", *space.dropout)
        point["hidden_sizes"] = list(
            shapes[trial.suggest_categorical("hidden_sizes", list(shapes))]
        )
    return point


@dataclass(frozen=True)
class SearchResult:
    best: dict[str, Any]  # overrides of training settings
    best_val_loss: float
    trials: int
    pruned: int
    run_id: str  # the MLflow parent run; trials are its children


def run(
    frame: pd.DataFrame,
    schema: Schema,
    config: TrainingConfig,
    model: ModelConfig,
    client: Any,
    experiment_id: str,
    run_name: str,
    root: Path | None = None,
) -> SearchResult:
    """Run ``config.search.trials`` trials on ``frame`` (the training part of the set), logged
    through ``client`` (an MlflowClient) into ``experiment_id``: no process-wide tracking URI
    is set."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = config.search
    # Trials keep no checkpoints: a killed search is cheaper to rerun than to resume.
    base = config.model_copy(
        update={
            "checkpoint_every_epochs": 0,
            "progress": "off",
            "epochs": space.epochs or config.epochs,
        }
    )
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    c = client
    tags = {"aiinfra.kind": "search", "search.trials": str(space.trials)}
    runs = Runs(c, experiment_id)
    parent = runs.start(run_name, tags)
    try:
        c.log_batch(
            parent, params=_params({f"search.{k}": v for k, v in space.model_dump().items()})
        )
        study.optimize(
            lambda trial: _trial(trial, frame, schema, base, model, root, runs.child_of(parent)),
            n_trials=space.trials,
            timeout=space.timeout_seconds,
        )
        builtin = model.entry_point == BUILTIN_MLP
        best = suggest(optuna.trial.FixedTrial(study.best_trial.params), space, builtin)
        c.log_batch(parent, params=_params({f"best.{k}": v for k, v in best.items()}))
        c.log_metric(parent, "best_val_loss", study.best_value)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    except BaseException:
        c.set_terminated(parent, status="FAILED")
        raise
    c.set_terminated(parent)
    return SearchResult(best, study.best_value, len(study.trials), pruned, parent)


@dataclass(frozen=True)
class Runs:
    """MLflow runs of one search, through an explicit client: the parent, then its trials."""

    client: Any
    experiment_id: str
    parent_id: str | None = None

    def start(self, name: str, tags: dict[str, str]) -> str:
        if self.parent_id is not None:
            tags = {**tags, "mlflow.parentRunId": self.parent_id}
        return str(self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id)

    def child_of(self, parent_id: str) -> Runs:
        return Runs(self.client, self.experiment_id, parent_id)


def _params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


def _metrics(values: dict[str, float], step: int = 0) -> list[Any]:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _trial(
    trial: Any,
    frame: pd.DataFrame,
    schema: Schema,
    base: TrainingConfig,
    model: ModelConfig,
    root: Path | None,
    runs: Runs,
) -> float:
    """Train one configuration as a child run; report each epoch to the pruner."""
    import optuna

    params = suggest(trial, base.search, model.entry_point == BUILTIN_MLP)
    config, network = with_overrides(base, model, params)
    c = runs.client
    run_id = runs.start(f"trial-{trial.number}", {})
    c.log_batch(run_id, params=_params({**params, "trial": trial.number}))

    def report(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        c.log_batch(run_id, metrics=_metrics({k: v for k, v in row.items() if k != "epoch"}, step))
        trial.report(row["val_loss"], step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"val_loss {row['val_loss']:.4f} at epoch {step}")

    try:
        result = train.train(frame, schema, config, network, on_epoch=report, root=root)
    except optuna.TrialPruned:
        c.set_tag(run_id, "trial_state", "pruned")
        c.set_terminated(run_id, status="KILLED")
        raise
    except Exception:
        c.set_terminated(run_id, status="FAILED")
        raise
    value: float = min(row["val_loss"] for row in result.history)
    speed = {"best_val_loss": value, "samples_per_second": result.samples_per_second}
    c.log_batch(run_id, metrics=_metrics(speed))
    c.set_tag(run_id, "trial_state", "complete")
    c.set_terminated(run_id)
    log.info("trial %d: %s -> %.4f", trial.number, params, value)
    return value
