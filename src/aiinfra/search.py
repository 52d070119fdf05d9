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
from typing import Any

import pandas as pd

from aiinfra import train
from aiinfra.config import SearchConfig, TrainingConfig

log = logging.getLogger(__name__)


def apply(config: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """``config`` with ``overrides`` of its fields, validated like a loaded config."""
    if not overrides:
        return config
    unknown = sorted(set(overrides) - set(TrainingConfig.model_fields))
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(unknown)}")
    return TrainingConfig.model_validate({**config.model_dump(), **overrides})


def _label(sizes: list[int]) -> str:
    return "x".join(str(s) for s in sizes)


def suggest(trial: Any, space: SearchConfig) -> dict[str, Any]:
    """One point of the search space (hidden sizes by label: Optuna's choices are scalars)."""
    shapes = {_label(s): s for s in space.hidden_sizes}
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "hidden_sizes": list(shapes[trial.suggest_categorical("hidden_sizes", list(shapes))]),
    }


@dataclass(frozen=True)
class SearchResult:
    best: dict[str, Any]  # overrides of training settings
    best_val_loss: float
    trials: int
    pruned: int
    run_id: str  # the MLflow parent run; trials are its children


def run(
    frame: pd.DataFrame, config: TrainingConfig, tracking_uri: str, experiment: str, run_name: str
) -> SearchResult:
    """Run ``config.search.trials`` trials on ``frame`` (the training part of the set)."""
    import mlflow
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
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.set_tags({"aiinfra.kind": "search", "search.trials": str(space.trials)})
        mlflow.log_params({f"search.{k}": v for k, v in space.model_dump().items()})
        study.optimize(
            lambda trial: _trial(trial, frame, base),
            n_trials=space.trials,
            timeout=space.timeout_seconds,
        )
        best = suggest(optuna.trial.FixedTrial(study.best_trial.params), space)
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric("best_val_loss", study.best_value)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return SearchResult(best, study.best_value, len(study.trials), pruned, parent.info.run_id)


def _trial(trial: Any, frame: pd.DataFrame, base: TrainingConfig) -> float:
    """Train one configuration as a child run; report each epoch to the pruner."""
    import mlflow
    import optuna

    params = suggest(trial, base.search)
    config = apply(base, params)
    mlflow.start_run(run_name=f"trial-{trial.number}", nested=True)
    mlflow.log_params({**params, "trial": trial.number})

    def report(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=step)
        trial.report(row["val_loss"], step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"val_loss {row['val_loss']:.4f} at epoch {step}")

    try:
        result = train.train(frame, config, on_epoch=report)
    except optuna.TrialPruned:
        mlflow.set_tag("trial_state", "pruned")
        mlflow.end_run(status="KILLED")
        raise
    except Exception:
        mlflow.end_run(status="FAILED")
        raise
    value: float = min(row["val_loss"] for row in result.history)
    mlflow.log_metrics({"best_val_loss": value, "samples_per_second": result.samples_per_second})
    mlflow.set_tag("trial_state", "complete")
    mlflow.end_run()
    log.info("trial %d: %s -> %.4f", trial.number, params, value)
    return value
