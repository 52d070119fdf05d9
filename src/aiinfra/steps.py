"""The pipeline's steps as plain functions over files: what each KFP component calls.

Each step reads its inputs from paths, writes its outputs to paths and returns the small
values the pipeline wires onwards. They run the same in one process (benchmarks, tests) as in
a Kubeflow task.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from aiinfra import (
    distributed,
    drift,
    evaluate,
    launch,
    plots,
    registry,
    retraining,
    schema,
    search,
    train,
    validation,
)
from aiinfra.config import PlatformConfig
from aiinfra.model import LoanModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetInfo:
    rows: int
    data_hash: str
    feature_service: str


def build_training_set(config: PlatformConfig, output: Path) -> TrainingSetInfo:
    """Point-in-time join of the loans (labels + request fields) with the Feast features."""
    from aiinfra import feature_store  # Feast costs ~5 s to import: only where it is used

    loans_path = config.data_dir / "loans.parquet"
    if not loans_path.exists():
        raise FileNotFoundError(
            f"no loans table at {loans_path}: run `aiinfra data generate` first"
        )
    loans = pd.read_parquet(loans_path)
    missing = [
        c for c in (schema.LOAN_ID, *schema.ENTITY_KEYS, schema.EVENT_TIMESTAMP) if c not in loans
    ]
    if missing:
        raise ValueError(f"{loans_path} lacks key columns: {', '.join(missing)}")
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    joined = feature_store.historical_features(store, repo, loans)
    known = [c for c in schema.TRAINING_COLUMNS if c in joined]
    joined = joined[known + [c for c in joined.columns if c not in known]]
    joined = joined.sort_values(schema.LOAN_ID).reset_index(drop=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    joined.to_parquet(output, index=False)
    return TrainingSetInfo(len(joined), evaluate.frame_hash(joined), repo.service.name)


def validate_training_set(
    config: PlatformConfig, training_set: Path, markdown_out: Path, html_out: Path | None = None
) -> validation.ValidationReport:
    """Run the suite and the drift tests against the champion's training data; write the
    report; raise DataValidationError if the data failed."""
    frame = pd.read_parquet(training_set)
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    found = registry.champion_reference(config.mlflow.tracking_uri, config.mlflow.model_name)
    report = validation.validate(frame, config.validation, None if found is None else found[1])
    markdown_out.parent.mkdir(parents=True, exist_ok=True)
    markdown_out.write_text(report.markdown())
    if html_out is not None:
        html_out.write_text(report.html())
    print(report.summary(), flush=True)  # the one-line verdict in the task's log
    if not report.success:
        # Stopped runs are visible in MLflow too (no model, no version): the report and why.
        registry.log_stopped_run(
            config.mlflow.tracking_uri,
            config.mlflow.experiment,
            {"validation": "failed", "validation_summary": report.summary()[:4000]},
            {"reports/validation.html": report.html(), "reports/validation.md": report.markdown()},
        )
        raise validation.DataValidationError(report)
    return report


def train_model(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    search_outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (with the search's best settings, if a search ran); returns the summary.

    Checkpoints go beside the model output unless ``training.checkpoint_dir`` says otherwise,
    so a restarted task resumes. With ``training.nproc_per_node`` > 1 the task runs torchrun.
    """
    outcome = search_outcome or {}
    hyperparameters = outcome.get("hyperparameters", {})
    checkpoints = launch.checkpoint_dir_for(config, model_dir)
    nproc = config.training.nproc_per_node
    summary: dict[str, Any]
    if nproc > 1 and not distributed.from_env().distributed:
        summary = launch.run_torchrun(
            config, training_set, model_dir, nproc, checkpoints, hyperparameters
        )
    else:
        summary = launch.train_to_dir(config, training_set, model_dir, checkpoints, hyperparameters)
    if "run_id" in outcome:
        summary["search_run_id"] = outcome["run_id"]
    return summary


def search_hyperparameters(
    config: PlatformConfig, training_set: Path, pipeline_run: str
) -> dict[str, Any]:
    """Optuna trials on the training part (each an MLflow child run); the best settings."""
    from aiinfra import search  # optuna is imported only where a search runs

    frame = pd.read_parquet(training_set)
    train_part, _ = train.split_by_time(frame, config.training.eval_fraction)
    found = search.run(
        train_part,
        config.training,
        config.mlflow.tracking_uri,
        config.mlflow.experiment,
        run_name=f"search-{pipeline_run}",
    )
    return {
        "hyperparameters": found.best,
        "best_val_loss": found.best_val_loss,
        "trials": found.trials,
        "pruned": found.pruned,
        "run_id": found.run_id,
    }


@dataclass(frozen=True)
class Evaluation:
    passed: bool
    reason: str
    metric: str
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    eval_hash: str
    eval_rows: int
    confusion: list[list[int]]
    report: str
    roc: dict[str, list[float]]
    champion_roc: dict[str, list[float]] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: str) -> Evaluation:
        return cls(**json.loads(payload))


def evaluate_model(config: PlatformConfig, training_set: Path, model_dir: Path) -> Evaluation:
    """Score the new model and the current @champion on the same held-out rows; apply the gate."""
    frame = pd.read_parquet(training_set)
    _, eval_part = train.split_by_time(frame, config.training.eval_fraction)
    challenger_model = LoanModel.load(model_dir)
    challenger = evaluate.score(challenger_model, eval_part)
    uri, name = config.mlflow.tracking_uri, config.mlflow.model_name
    champion_version = registry.alias_version(uri, name, registry.CHAMPION)
    champion = champion_roc = None
    if champion_version is not None:
        with tempfile.TemporaryDirectory() as tmp:
            champion_model = registry.load_version(uri, name, champion_version, Path(tmp))
        champion = evaluate.score(champion_model, eval_part)
        champion_roc = evaluate.roc_points(champion_model, eval_part)
    decision = evaluate.decide(config.gate, challenger, champion)
    eval_hash = evaluate.frame_hash(eval_part)
    report = evaluate.gate_report(
        decision, challenger, champion, champion_version, eval_hash, len(eval_part)
    )
    return Evaluation(
        decision.passed,
        decision.reason,
        decision.metric,
        challenger,
        champion,
        champion_version,
        eval_hash,
        len(eval_part),
        evaluate.confusion(challenger_model, eval_part),
        report,
        evaluate.roc_points(challenger_model, eval_part),
        champion_roc,
    )


def register_model(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    evaluation: Evaluation,
    training: dict[str, Any],
    lineage: dict[str, str],
    validation_report: Path | None = None,
) -> str:
    """Log the run and register a version tagged with its lineage and its checks."""
    frame = pd.read_parquet(training_set)
    model = LoanModel.load(model_dir)
    tags = {
        **lineage,
        "data_hash": evaluate.frame_hash(frame),
        "eval_hash": evaluation.eval_hash,
        "feature_service": config.features.feature_service,
        "validation": "passed",  # this step only runs after validation passed
        "gate": "passed" if evaluation.passed else "failed",
        "gate_reason": evaluation.reason,
        "gate_metric": evaluation.metric,
        "champion_at_evaluation": evaluation.champion_version or "none",
    }
    if "search_run_id" in training:
        tags["search_run_id"] = training["search_run_id"]
    trained_with = search.apply(config.training, training.get("hyperparameters") or {})
    params = {
        **{f"training.{k}": v for k, v in trained_with.model_dump().items()},
        "data.rows": len(frame),
        **{k: training.get(k, "unknown") for k in ("device", "device_name", "precision")},
        "energy_source": training.get("energy_source", "unavailable"),
    }
    history: list[dict[str, float]] = training.get("history", [])
    per_epoch = {k for row in history for k in row}
    metrics = {f"eval_{k}": v for k, v in evaluation.challenger.items()}
    # Per-epoch values go in as series (step = epoch), not again as one more point.
    metrics.update(
        {
            k: float(v)
            for k, v in training.items()
            if isinstance(v, int | float) and k not in per_epoch
        }
    )
    registered = registry.log_and_register(
        config.mlflow.tracking_uri,
        config.mlflow.experiment,
        config.mlflow.model_name,
        model,
        frame,
        params,
        metrics,
        tags,
        {
            "reports/gate.md": evaluation.report,
            # What the next run's data is compared with (drift), if this version becomes champion.
            registry.REFERENCE_PROFILE: json.dumps(drift.build_profile(frame)),
            **(
                {"reports/validation.html": validation_report.read_text()}
                if validation_report is not None and validation_report.exists()
                else {}
            ),
        },
        run_name=lineage.get("pipeline_run"),
        history=history,
        figures={
            "roc.png": plots.roc_figure(evaluation.roc, evaluation.champion_roc),
            "confusion_matrix.png": plots.confusion_figure(evaluation.confusion),
        },
    )
    # A sample of the training rows: what `aiinfra retrain --if-drifted` compares with.
    retraining.log_reference(config.mlflow.tracking_uri, registered.run_id, frame)
    if evaluation.champion_version is not None:
        # Both versions carry the hash of the rows they were compared on.
        registry.client(config.mlflow.tracking_uri).set_model_version_tag(
            config.mlflow.model_name,
            evaluation.champion_version,
            f"compared_with_v{registered.version}_on",
            evaluation.eval_hash,
        )
    return str(registered.version)


def promote_model(config: PlatformConfig, version: str, pipeline_run: str) -> str | None:
    previous: str | None = registry.promote(
        config.mlflow.tracking_uri,
        config.mlflow.model_name,
        version,
        actor=f"pipeline:{pipeline_run}",
        reason="evaluation gate passed",
    )
    return previous
