"""The training pipeline: wiring only. What each step does lives in ``aiinfra.steps``."""

from typing import Any

from kfp import dsl

import components
from aiinfra.config import PlatformConfig

PIPELINE_NAME = "loan-default-training"


def build_pipeline(config: PlatformConfig) -> Any:
    """The pipeline for ``config``: its image in every task, its settings as the default."""
    c = components.build(config.kfp.image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Feast training set -> GX validation -> train -> evaluate vs @champion "
        "-> register -> promote when the gate passes",
    )
    def training_pipeline(config_json: str = config.to_json(), git_commit: str = "unknown") -> str:
        run = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        data = c.build_training_set(config=config_json).set_display_name("build training set")
        checked = c.validate_data(config=config_json, training_set=data.outputs["training_set"])
        checked.set_display_name("validate data")
        trained = c.train_model(config=config_json, training_set=data.outputs["training_set"])
        trained.after(checked).set_display_name("train model")
        evaluated = c.evaluate_model(
            config=config_json,
            training_set=data.outputs["training_set"],
            model=trained.outputs["model"],
        ).set_display_name("evaluate vs champion")
        registered = c.register_model(
            config=config_json,
            training_set=data.outputs["training_set"],
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
            training=trained.outputs["Output"],
            git_commit=git_commit,
            pipeline_run=run,
        ).set_display_name("register model")
        with dsl.If(evaluated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            c.promote_model(
                config=config_json, version=registered.output, pipeline_run=run
            ).set_display_name("promote to champion")
        return registered.output

    return training_pipeline
