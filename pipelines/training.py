"""The training pipeline: wiring only. What each step does lives in ``aiinfra.steps``."""

from typing import Any

from kfp import dsl

import components
from aiinfra.project.config import PlatformConfig, TrainingConfig
from pipelines import task_options


def pipeline_name(config: PlatformConfig) -> str:
    return f"{config.project.name}-training"


def request_resources(task: Any, training: TrainingConfig) -> None:
    """What a training task asks of the cluster (only what is configured), so Kubeflow
    schedules it on a node with the accelerator; kfp.local ignores it."""
    if training.accelerator_type:
        task.set_accelerator_type(training.accelerator_type)
        task.set_accelerator_limit(training.accelerator_limit)
    if training.cpu_request:
        task.set_cpu_request(training.cpu_request)
    if training.memory_request:
        task.set_memory_request(training.memory_request)


def build_pipeline(config: PlatformConfig) -> Any:
    """The pipeline for ``config``: its image in every task, its settings as the default."""
    c = components.build(config.kfp.image)

    @dsl.pipeline(
        name=pipeline_name(config),
        description="Feast training set -> GX validation -> train -> evaluate vs @champion "
        "-> register -> promote when the gate passes",
    )
    def training_pipeline(
        config_json: str = config.to_json(), git_commit: str = "unknown", trigger: str = ""
    ) -> str:
        # trigger: why a monitoring rule started this run ("": a person or a schedule).
        run = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        data = c.build_training_set(config=config_json).set_display_name("build training set")
        checked = c.validate_data(
            config=config_json, training_set=data.outputs["training_set"], trigger=trigger
        )
        checked.set_display_name("validate data")
        search: Any = "{}"
        if config.training.search.trials:  # whether to search is decided at compile time
            searched = c.search_hyperparameters(
                config=config_json, training_set=data.outputs["training_set"], pipeline_run=run
            )
            request_resources(searched.after(checked), config.training)
            search = searched.set_display_name("search hyper-parameters").output
        trained = c.train_model(
            config=config_json, training_set=data.outputs["training_set"], search=search
        )
        request_resources(trained, config.training)
        trained.after(checked).set_display_name("train model")
        evaluated = c.evaluate_model(
            config=config_json,
            training_set=data.outputs["training_set"],
            model=trained.outputs["model"],
            trigger=trigger,
        ).set_display_name("evaluate vs champion")
        registered = c.register_model(
            config=config_json,
            training_set=data.outputs["training_set"],
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
            validation_report=checked.outputs["report"],
            training=trained.outputs["Output"],
            git_commit=git_commit,
            pipeline_run=run,
            trigger=trigger,
        ).set_display_name("register model")
        with dsl.If(evaluated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            c.promote_model(
                config=config_json,
                version=registered.outputs["Output"],
                pipeline_run=run,
                model=trained.outputs["model"],
            ).set_display_name("promote to champion")
        task_options.configure(config)  # caching, retries, volume, secrets: from the config
        return registered.outputs["Output"]

    return training_pipeline
