"""The pipeline's steps as plain functions over files: what each KFP component calls.

Each step reads its inputs from paths, writes its outputs to paths and returns the small
values the pipeline wires onwards. They run the same in one process (benchmarks, tests) as in
a Kubeflow task. The training set carries its schema (:mod:`aiinfra.data.training_set`), so
only the first step reads the project's Feast repo.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiinfra.project.config import PlatformConfig

# Each step imports what it uses inside its function: a pipeline task runs one step in a fresh
# process, and importing the libraries of every step (torch, MLflow, Feast, GX, scikit-learn,
# matplotlib) would cost each task seconds it does not need (benchmarks/run.py measures it).
if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from aiinfra.data.validation import ValidationReport
    from aiinfra.project.definition import Project
    from aiinfra.project.schema import Schema
    from aiinfra.release.model_card import ModelCard
    from aiinfra.training.job import TrainingSummary
    from aiinfra.training.model import TabularModel

log = logging.getLogger(__name__)


def check_project(config: PlatformConfig) -> Project:
    """Load the project and build its network once on dummy input: every definition error
    (files, columns, types, classes, metric, model entry point) surfaces here, before any
    pipeline task runs. Raises ProjectError."""
    from aiinfra.project.definition import ProjectError, load_project
    from aiinfra.training.model import check_network

    project = load_project(config)
    schema = project.schema
    width = len(schema.numeric) + sum(max(1, len(f.categories)) for f in schema.categorical)
    try:
        check_network(config.model, width, schema.output_width, config.project.root)
    except ValueError as exc:
        raise ProjectError(str(exc)) from exc
    return project


@dataclass(frozen=True)
class TrainingSetInfo:
    rows: int
    data_hash: str
    feature_service: str
    ignored_columns: tuple[str, ...]


def build_training_set(config: PlatformConfig, output: Path) -> TrainingSetInfo:
    """Point-in-time join of the label table with the project's Feast feature service."""
    from aiinfra.data.training_set import build_training_set as build_rows
    from aiinfra.data.training_set import write_training_set
    from aiinfra.project.definition import load_project
    from aiinfra.release.metrics import frame_hash

    project = load_project(config)
    frame = build_rows(config, project)
    write_training_set(frame, project.schema, output, project.ignored_columns)
    return TrainingSetInfo(
        len(frame),
        frame_hash(frame),
        project.schema.feature_service,
        project.ignored_columns,
    )


def validate_training_set(
    config: PlatformConfig,
    training_set: Path,
    markdown_out: Path,
    html_out: Path | None = None,
    expected_change: str = "",
) -> ValidationReport:
    """Run the suite and the drift tests against the champion's training data; write the
    report; raise DataValidationError if the data failed. ``expected_change``: why the run
    was started, when a monitoring rule started it because the data moved (drift is then
    reported, not failed)."""
    from aiinfra.data import validation
    from aiinfra.data.training_set import ignored_columns, read_training_set
    from aiinfra.release import registry

    frame, schema = read_training_set(training_set)
    c = registry.client(config.mlflow.tracking_uri)
    found = registry.champion_reference(config.mlflow.tracking_uri, config.model_name)
    reference = None if found is None else found[1]
    report = validation.validate(
        frame,
        schema,
        config.validation,
        reference,
        ignored_columns=ignored_columns(training_set),
        drift_rule=config.drift,
        expected_change=expected_change,
    )
    markdown_out.parent.mkdir(parents=True, exist_ok=True)
    markdown_out.write_text(report.markdown())
    if html_out is not None:
        html_out.write_text(report.html())
    print(report.summary(), flush=True)  # the one-line verdict in the task's log
    if not report.success:
        # Stopped runs are visible in MLflow too (no model, no version): the report and why.
        registry.log_stopped_run(
            c,
            config.experiment,
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
) -> TrainingSummary:
    """Train (with the search's best settings, if a search ran); returns the summary.

    Checkpoints go beside the model output unless ``training.checkpoint_dir`` says otherwise,
    so a restarted task resumes. With ``training.nproc_per_node`` > 1 the task runs torchrun.
    """
    from aiinfra.training import distributed, launcher
    from aiinfra.training.job import TrainingSummary, checkpoint_dir_for, train_to_directory

    outcome = search_outcome or {}
    hyperparameters = outcome.get("hyperparameters", {})
    checkpoints = checkpoint_dir_for(config, model_dir)
    nproc = config.training.nproc_per_node
    if nproc > 1 and not distributed.from_env().distributed:
        summary = launcher.run_torchrun(
            config, training_set, model_dir, nproc, checkpoints, hyperparameters
        )
    else:
        summary = train_to_directory(config, training_set, model_dir, checkpoints, hyperparameters)
    if "run_id" in outcome:
        summary = TrainingSummary(**{**asdict(summary), "search_run_id": outcome["run_id"]})
    return summary


def search_hyperparameters(
    config: PlatformConfig, training_set: Path, pipeline_run: str
) -> dict[str, Any]:
    """Optuna trials on the training part (each an MLflow child run); the best settings."""
    from aiinfra.data.training_set import read_training_set
    from aiinfra.release import registry
    from aiinfra.training import search, train

    frame, schema = read_training_set(training_set)
    train_part, _ = train.split_by_time(frame, config.training.eval_fraction, schema)
    c = registry.client(config.mlflow.tracking_uri)
    found = search.run(
        train_part,
        schema,
        config.training,
        config.model,
        c,
        registry.experiment_id(c, config.experiment),
        run_name=f"search-{pipeline_run}",
        root=config.project.root,
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
    report: str
    task: str
    classes: list[str]  # as text, for confusion-matrix labels
    confusion: list[list[int]] | None = None  # classification
    roc: dict[str, list[float]] | None = None  # binary
    champion_roc: dict[str, list[float]] | None = None
    residuals: dict[str, list[float]] | None = None  # regression: actual and predicted
    held: bool = False  # the gate stopped for a person: the champion degraded on the new data

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: str) -> Evaluation:
        return cls(**json.loads(payload))


def evaluate_model(
    config: PlatformConfig, training_set: Path, model_dir: Path, expected_change: str = ""
) -> Evaluation:
    """Score the new model and the current @champion on the same held-out rows; apply the gate.

    When the champion scores far below its own gate-time figure on these rows, the data changed
    and the run holds for a person (registered, not promoted) unless ``expected_change`` says
    the run was started because of that change (a monitoring rule)."""
    from aiinfra.data.training_set import read_training_set
    from aiinfra.project.definition import metric_for
    from aiinfra.release import gate, metrics, registry
    from aiinfra.training import train
    from aiinfra.training.model import TabularModel, trusted_entry_points

    frame, schema = read_training_set(training_set)
    _, eval_part = train.split_by_time(frame, config.training.eval_fraction, schema)
    root = config.project.root
    challenger_model = TabularModel.load(model_dir, root)
    challenger = metrics.score(challenger_model, eval_part, schema)
    uri, name = config.mlflow.tracking_uri, config.model_name
    champion_version = registry.alias_version(uri, name, registry.CHAMPION)
    champion = champion_roc = None
    if champion_version is not None:
        with tempfile.TemporaryDirectory() as tmp:
            champion_model = registry.load_version(
                uri, name, champion_version, Path(tmp), root, trusted_entry_points(config.model)
            )
        champion = metrics.score(champion_model, eval_part, schema)
        if schema.task == "binary":
            champion_roc = metrics.roc_points(champion_model, eval_part, schema)
    metric = metric_for(config)
    decision = gate.decide(config.gate, metric, challenger, champion)
    degraded = None
    if champion is not None and champion_version is not None:
        then = registry.gate_time_scores(uri, name, champion_version).get(metric)
        degraded = gate.champion_degradation(config.gate, metric, champion[metric], then)
        if degraded is not None:
            decision = gate.hold_for_degradation(decision, degraded, expected_change)
    eval_hash = metrics.frame_hash(eval_part)
    report = gate.gate_report(
        decision, challenger, champion, champion_version, eval_hash, len(eval_part)
    )
    if degraded is not None:
        report += "\n" + gate.degradation_note(degraded, expected_change) + "\n"
    classifier = schema.task != "regression"
    return Evaluation(
        passed=decision.passed,
        reason=decision.reason,
        metric=metric,
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        eval_hash=eval_hash,
        eval_rows=len(eval_part),
        report=report,
        task=schema.task,
        classes=[str(c) for c in challenger_model.classes],
        confusion=metrics.confusion(challenger_model, eval_part, schema) if classifier else None,
        roc=metrics.roc_points(challenger_model, eval_part, schema)
        if schema.task == "binary"
        else None,
        champion_roc=champion_roc,
        residuals=None if classifier else metrics.residuals(challenger_model, eval_part, schema),
        held=decision.held,
    )


def evaluation_figures(evaluation: Evaluation) -> dict[str, Any]:
    """The plots of the evaluation that fit its task."""
    from aiinfra.release import plots

    figures: dict[str, Any] = {}
    if evaluation.roc is not None:
        figures["roc.png"] = plots.roc_figure(evaluation.roc, evaluation.champion_roc)
    if evaluation.confusion is not None:
        figures["confusion_matrix.png"] = plots.confusion_figure(
            evaluation.confusion, evaluation.classes
        )
    if evaluation.residuals is not None:
        figures["residuals.png"] = plots.residuals_figure(evaluation.residuals)
    return figures


def register_model(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    evaluation: Evaluation,
    training: TrainingSummary,
    lineage: dict[str, str],
    validation_report: Path | None = None,
    card_out: Path | None = None,
    trigger: str = "",
) -> str:
    """Log the run and register a version tagged with its lineage and its checks (once per
    pipeline run: a retried task returns the version registered before). The version's model
    card is logged in its run; ``card_out``: where its Markdown is written too."""
    from aiinfra.data.training_set import read_training_set
    from aiinfra.release import metrics, model_card, registry
    from aiinfra.training import search
    from aiinfra.training.model import TabularModel

    c = registry.client(config.mlflow.tracking_uri)
    run = lineage.get("pipeline_run")
    if run and (done := registry.version_of_run(c, config.model_name, run)) is not None:
        log.info("pipeline run %s registered version %s already", run, done)
        if card_out is not None:
            _write_text(card_out, _stored_card(c, config.model_name, done))
        return str(done)
    frame, schema = read_training_set(training_set)
    model = TabularModel.load(model_dir, config.project.root)
    data_hash = metrics.frame_hash(frame)
    tags = {
        **lineage,
        "data_hash": data_hash,
        "eval_hash": evaluation.eval_hash,
        "feature_service": schema.feature_service,
        "task": schema.task,
        "model_entry_point": config.model.entry_point,
        "validation": "passed",  # this step only runs after validation passed
        "gate": "passed" if evaluation.passed else "held" if evaluation.held else "failed",
        "gate_reason": evaluation.reason,
        "gate_metric": evaluation.metric,
        "champion_at_evaluation": evaluation.champion_version or "none",
        # Why this run started: a monitoring rule's finding, or a person / schedule ("").
        "trigger": "monitoring" if trigger else "manual",
    }
    if trigger:
        tags["trigger_reason"] = trigger[:4000]
    if training.search_run_id:
        tags["search_run_id"] = training.search_run_id
    trained_with, network = search.with_overrides(
        config.training, config.model, training.hyperparameters
    )
    params = {
        **{f"training.{k}": v for k, v in trained_with.model_dump().items()},
        **{f"model.{k}": v for k, v in network.settings.items()},
        "model.entry_point": network.entry_point,
        "data.rows": len(frame),
        "device": training.device,
        "precision": training.precision,
        "device_name": training.usage.get("device_name", "unknown"),
        "energy_source": training.usage.get("energy_source", "unavailable"),
    }
    scores = {f"eval_{k}": v for k, v in evaluation.challenger.items()}
    validation_html = (
        validation_report.read_text()
        if validation_report is not None and validation_report.exists()
        else None
    )
    card = model_card.ModelCard(
        config=config,
        schema=schema,
        version=_next_version(c, config.model_name),
        evaluation=evaluation,
        training=training,
        tags=tags,
        params=params,
        data=model_card.DataFacts.of(frame, schema, str(config.labels_path), data_hash),
        validation_summary=(
            None
            if validation_html is None
            else model_card.validation_summary_from_html(validation_html)
        ),
    )
    registered = registry.log_and_register(
        c,
        config.experiment,
        config.model_name,
        model,
        frame,
        params,
        {**scores, **training.metrics()},
        tags,
        {
            "reports/gate.md": evaluation.report,
            # What the next run's data is compared with (drift), if this version becomes champion.
            registry.REFERENCE_PROFILE: json.dumps(_reference_profile(model, frame, schema)),
            registry.REFERENCE_SCHEMA: json.dumps(schema.to_dict(), indent=2, default=str),
            **({"reports/validation.html": validation_html} if validation_html else {}),
            # In the registering call, so no version exists without its card.
            **_card_texts(card),
        },
        run_name=lineage.get("pipeline_run"),
        history=training.history,
        figures=evaluation_figures(evaluation),
    )
    # The card was written before the registry numbered the version and MLflow named the run
    # (the version was a prediction): now both are known, it is written again in place.
    card = replace(card, version=registered.version, run_id=registered.run_id)
    for path, text in _card_texts(card).items():
        c.log_text(registered.run_id, text, path)
    if card_out is not None:
        _write_text(card_out, card.markdown())
    if evaluation.champion_version is not None:
        # Both versions carry the hash of the rows they were compared on.
        c.set_model_version_tag(
            config.model_name,
            evaluation.champion_version,
            f"compared_with_v{registered.version}_on",
            evaluation.eval_hash,
        )
    return str(registered.version)


def _reference_profile(model: TabularModel, frame: pd.DataFrame, schema: Schema) -> dict[str, Any]:
    """What later data is compared with (validation, retraining, monitoring): the training
    rows' features and label, and the model's answers on a sample of them."""
    from aiinfra.data import drift
    from aiinfra.release import metrics

    sample = frame.sample(min(len(frame), drift.SAMPLE_SIZE), random_state=0)
    predictions = metrics.prediction_series(model, model.predict(sample))
    profile: dict[str, Any] = drift.build_profile(frame, schema, predictions)
    return profile


def _card_texts(card: ModelCard) -> dict[str, str]:
    from aiinfra.release import model_card

    return {model_card.MARKDOWN_PATH: card.markdown(), model_card.HTML_PATH: card.html()}


def _next_version(c: MlflowClient, name: str) -> str:
    """The number the registry will most likely give the next version of ``name`` (its highest
    live version + 1; concurrent registrations or deleted versions can make it wrong)."""
    # A model not registered yet has no versions: the search finds none.
    latest = c.search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
    )
    return str(int(latest[0].version) + 1) if latest else "1"


def _stored_card(c: MlflowClient, name: str, version: str) -> str:
    """The Markdown card logged with ``version``."""
    from aiinfra.release import model_card

    run_id = str(c.get_model_version(name, version).run_id)
    with tempfile.TemporaryDirectory() as tmp:
        return Path(c.download_artifacts(run_id, model_card.MARKDOWN_PATH, tmp)).read_text()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def promote_model(
    config: PlatformConfig, version: str, pipeline_run: str, model_dir: Path | None = None
) -> str | None:
    """Move @champion to a version the gate passed, once it answered in a real serving process
    as evaluated (``model_dir``: the model as evaluated; default: the registered one). Returns
    the version it replaced; raises ``PromotionRefused`` when the serving check fails (the
    reason is recorded on the version and in its gate report)."""
    from aiinfra.release import registry

    if config.gate.shadow.min_requests > 0:  # promoted later, on shadow evidence
        registry.client(config.mlflow.tracking_uri).set_model_version_tag(
            config.model_name, version, "promotion", AWAITING_SHADOW
        )
        return AWAITING_SHADOW
    check_serving(config, version, model_dir)
    previous: str | None = registry.promote(
        config.mlflow.tracking_uri,
        config.model_name,
        version,
        actor=f"pipeline:{pipeline_run}",
        reason="evaluation gate passed",
        as_evaluated=True,  # refuse if @champion moved since the gate compared against it
    )
    return previous


AWAITING_SHADOW = "awaiting shadow traffic (gate.shadow)"


def shadow_evidence(config: PlatformConfig, version: str) -> str | None:
    """Why the shadow traffic logged so far does not support promoting ``version`` (None when
    it does, or when the profile asks for none)."""
    rule = config.gate.shadow
    if rule.min_requests <= 0:
        return None
    from datetime import UTC, datetime, timedelta

    from aiinfra.monitoring import shadow_report

    since = datetime.now(UTC) - timedelta(days=config.serving.log_retention_days)
    seen = shadow_report.summarize(config.shadow_log_dir, since).get(version)
    if seen is None or seen.requests < rule.min_requests:
        count = 0 if seen is None else seen.requests
        return (
            f"shadow traffic: {count} of the {rule.min_requests} requests gate.shadow asks for "
            "(serve with serving.shadow on)"
        )
    if seen.agreement < rule.min_agreement:
        return (
            f"shadow traffic: agreement {seen.agreement:.1%} with the champion, below "
            f"gate.shadow.min_agreement {rule.min_agreement:.1%}"
        )
    return None


def check_serving(config: PlatformConfig, version: str, model_dir: Path | None = None) -> None:
    """Serve before promote (``aiinfra.ops.serving_check``), when the profile asks for it:
    record the outcome on the version; raise ``PromotionRefused`` when it failed."""
    if not config.gate.serving_check.enabled:
        return
    from aiinfra.ops import serving_check
    from aiinfra.release import registry
    from aiinfra.training.model import TabularModel, trusted_entry_points

    uri, name, root = config.mlflow.tracking_uri, config.model_name, config.project.root
    with tempfile.TemporaryDirectory() as tmp:
        expected = (
            TabularModel.load(model_dir, root)
            if model_dir is not None
            else registry.load_version(
                uri, name, version, Path(tmp), root, trusted_entry_points(config.model)
            )
        )
    outcome = serving_check.check_version(
        config,
        version,
        expected,
        sample_rows(config, expected.schema, config.gate.serving_check.rows),
    )
    registry.record_serving_check(uri, name, version, outcome.tags(), outcome.markdown())
    if not outcome.passed:
        raise registry.PromotionRefused(
            f"version {version} of {name} failed its serving check: {outcome.reason}"
        )


def sample_rows(config: PlatformConfig, schema: Schema, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` rows of the label table as request rows (entity keys and
    request-time features, as plain values)."""
    from aiinfra.project.definition import read_label_table

    labels = read_label_table(config.labels_path, schema.timestamp)
    fields = [*schema.entity_names, *(f.name for f in schema.request_features)]
    newest = labels.sort_values(schema.timestamp, ascending=False).head(count)[fields]
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in newest.to_dict("records")
    ]


def monitor_serving(
    config: PlatformConfig, html_out: Path, markdown_out: Path
) -> tuple[str, dict[str, float]]:
    """Monitor the served model (:mod:`aiinfra.monitoring.monitor`) and copy its report to the
    task's outputs; returns why to retrain ("" for no run) and the latest window's figures."""
    from aiinfra.monitoring import monitor

    outcome = monitor.run(config)
    _write_text(html_out, outcome.html_path.read_text())
    _write_text(markdown_out, outcome.report.markdown())
    print(outcome.report.summary(), flush=True)
    return outcome.trigger, outcome.report.metrics()
