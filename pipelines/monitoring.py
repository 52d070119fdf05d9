"""The monitoring pipeline: watch the served model and, when a monitoring rule fires, run the
training pipeline itself (nested) with the reason as its ``trigger``. Wiring only: what the
monitor does lives in ``aiinfra.steps.monitor_serving``."""

from typing import Any

from kfp import dsl

import components
from aiinfra.project.config import PlatformConfig
from pipelines import task_options
from pipelines.training import build_pipeline


def monitoring_pipeline_name(config: PlatformConfig) -> str:
    return f"{config.project.name}-monitoring"


def build_monitoring_pipeline(config: PlatformConfig) -> Any:
    """The pipeline for ``config``: its image in the monitor task, its settings as the
    default; the training branch is the training pipeline as compiled for the same config."""
    c = components.build(config.kfp.image)
    training = build_pipeline(config)

    @dsl.pipeline(
        name=monitoring_pipeline_name(config),
        description="monitor the served model (drift, errors, latency, live metrics) -> "
        "run the training pipeline when a rule fires",
    )
    def monitoring_pipeline(
        config_json: str = config.to_json(), git_commit: str = "unknown"
    ) -> None:
        monitor = c.monitor_model(config=config_json).set_display_name("monitor serving")
        # Configured before the nested pipeline exists: the training pipeline set the options
        # of its own tasks, and volumes and secrets can only be set on a component's task.
        task_options.configure(config)  # monitor-model: never cached (see NEVER_CACHED)
        trigger = monitor.outputs["Output"]
        with dsl.If(trigger != "", name="rules-fired"):
            retrain = training(config_json=config_json, git_commit=git_commit, trigger=trigger)
            # A retraining run is never a replay of an earlier one.
            retrain.set_caching_options(False).set_display_name("retrain")

    return monitoring_pipeline
