"""Components of the model stage: train, evaluate against @champion, register, promote."""

from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)


def train_model(
    config: str,
    training_set: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    search: str = "{}",
) -> str:
    """Train the project's network (CUDA when present; with the search's best settings when one
    ran); returns the training summary as JSON."""
    import json
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import train_model as step

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    summary = step(
        config_from_json(config), Path(training_set.path), Path(model.path), json.loads(search)
    )
    for key, value in summary.metrics().items():
        metrics.log_metric(key, value)
    model.metadata.update(
        {"device": summary.device, "framework": "pytorch", "format": "safetensors"}
    )
    return summary.to_json()


def search_hyperparameters(config: str, training_set: Input[Dataset], pipeline_run: str) -> str:
    """Optuna trials, each an MLflow child run; returns the best settings and the run as JSON."""
    import json
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import search_hyperparameters as step

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    return json.dumps(step(config_from_json(config), Path(training_set.path), pipeline_run))


def evaluate_model(
    config: str,
    training_set: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[Markdown],
    evaluation: Output[Artifact],
    trigger: str = "",
) -> bool:
    """Score challenger and @champion on the same held-out rows; returns the gate's decision.
    ``trigger``: why a monitoring rule started the run ("" otherwise).

    (A single return value: the local runner resolves ``dsl.If`` only on a task's ``Output``.)
    """
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import evaluate_model as step

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    result = step(config_from_json(config), Path(training_set.path), Path(model.path), trigger)
    for key, value in result.challenger.items():
        metrics.log_metric(f"challenger_{key}", value)
    for key, value in (result.champion or {}).items():
        metrics.log_metric(f"champion_{key}", value)
    # Classification: the confusion matrix and (binary) the ROC curve; regression has its
    # error metrics above and its residual plot in MLflow.
    if result.confusion is not None:
        classification.log_confusion_matrix(result.classes, result.confusion)
    if result.roc is not None:
        classification.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["thresholds"])
    Path(report.path).write_text(result.report)
    Path(evaluation.path).write_text(result.to_json())
    evaluation.metadata.update(
        {"passed": result.passed, "held": result.held, "reason": result.reason}
    )
    return result.passed


def register_model(
    config: str,
    training_set: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Artifact],
    validation_report: Input[HTML],
    training: str,
    git_commit: str,
    pipeline_run: str,
    card: Output[Markdown],
    trigger: str = "",
) -> str:
    """Log the MLflow run and register a version with lineage tags and its model card (shown
    here as Markdown); returns the version."""
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import Evaluation
    from aiinfra.steps import register_model as step
    from aiinfra.training.job import TrainingSummary

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    lineage = {"git_commit": git_commit, "pipeline_run": pipeline_run}
    return step(
        config_from_json(config),
        Path(training_set.path),
        Path(model.path),
        Evaluation.from_json(Path(evaluation.path).read_text()),
        TrainingSummary.from_json(training),
        lineage,
        Path(validation_report.path),
        card_out=Path(card.path),
        trigger=trigger,
    )


def promote_model(config: str, version: str, pipeline_run: str, model: Input[Model]) -> str:
    """Serve ``version`` in a real serving process and hold it to ``model`` (as evaluated),
    then move @champion to it; returns the version it replaced ("none" if first)."""
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import promote_model as step

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    return step(config_from_json(config), version, pipeline_run, Path(model.path)) or "none"
