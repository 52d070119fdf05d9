"""KFP components: one thin wrapper per pipeline step over a function of ``aiinfra.steps``.

The step functions here are plain Python; :func:`build` turns them into KFP components on the
configured image, so the compiled pipeline names the image from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components.data import build_training_set, validate_data
from components.model import (
    evaluate_model,
    promote_model,
    register_model,
    search_hyperparameters,
    train_model,
)
from components.monitoring import monitor_model


@dataclass(frozen=True)
class Components:
    build_training_set: Any
    validate_data: Any
    train_model: Any
    evaluate_model: Any
    register_model: Any
    promote_model: Any
    search_hyperparameters: Any
    monitor_model: Any


def build(image: str) -> Components:
    def component(func: Any) -> Any:
        # The image carries the project and its pinned dependencies: nothing is pip-installed
        # at task start (that would need the network, and could change versions).
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return Components(
        build_training_set=component(build_training_set),
        validate_data=component(validate_data),
        train_model=component(train_model),
        evaluate_model=component(evaluate_model),
        register_model=component(register_model),
        promote_model=component(promote_model),
        search_hyperparameters=component(search_hyperparameters),
        monitor_model=component(monitor_model),
    )
