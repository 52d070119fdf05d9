"""What the registry and serving tests share: a small trained model and a model name of
their own on the session's real MLflow server."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from aiinfra.ops import local_servers
from aiinfra.project.config import ModelConfig, PlatformConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.training import train
from aiinfra.training.model import TabularModel
from aiinfra_cli.workflow import apply_features
from examples.loan_default.data import DemoData
from tests.conftest import smoke_config

FAST = TrainingConfig(epochs=2, device="cpu")
SMALL = ModelConfig(settings={"hidden_sizes": [8]})
# A request row of the loan example whose entities the demo's online store knows.
LOAN_ROW = {
    "applicant_id": 17,
    "zipcode": "10074",
    "loan_amount": 12000,
    "term_months": 36,
    "purpose": "car",
}


def register(
    config: PlatformConfig,
    frame: pd.DataFrame,
    model: TabularModel,
    gate: str = "passed",
    **extra_tags: str,
) -> str:
    """Log and register ``model`` under ``config.model_name`` with the tags a pipeline gives."""
    tags = {"validation": "passed", "gate": gate, "data_hash": "test", "git_commit": "test"}
    return registry.log_and_register(
        registry.client(config.mlflow.tracking_uri),
        "slot-tests",
        config.model_name,
        model,
        frame,
        {"epochs": 2},
        {"eval_roc_auc": 0.7},
        {**tags, **extra_tags},
        {"reports/gate.md": "# test"},
    ).version


@pytest.fixture(scope="module")
def model(training_frame: pd.DataFrame, schema: Schema) -> TabularModel:
    return train.train(training_frame, schema, FAST, SMALL).model


@pytest.fixture()
def config(mlflow_server: PlatformConfig) -> PlatformConfig:
    return mlflow_server.model_copy(
        update={"mlflow": mlflow_server.mlflow.model_copy(update={"model_name": "slot-model"})}
    )


@pytest.fixture()
def fresh(mlflow_server: PlatformConfig, request: pytest.FixtureRequest) -> PlatformConfig:
    """The session's MLflow server, under a model name of this test's own."""
    name = "m-" + request.node.name.removeprefix("test_")[:40]
    return mlflow_server.model_copy(
        update={"mlflow": mlflow_server.mlflow.model_copy(update={"model_name": name})}
    )


def serving_home(
    home: Path, mlflow_server: PlatformConfig, demo: DemoData, model_name: str
) -> PlatformConfig:
    """A platform home of its own (the demo tables, a materialized online store) on the
    session's MLflow server, under ``model_name``."""
    own = smoke_config(home)
    config = own.model_copy(
        update={"mlflow": mlflow_server.mlflow.model_copy(update={"model_name": model_name})}
    )
    demo.write(config.data_dir)
    apply_features(config)
    return config


@contextlib.contextmanager
def serving(config: PlatformConfig, name: str = "bentoml") -> Iterator[str]:
    """``bentoml serve`` for ``config``, as ``aiinfra serve`` starts it (``name``: its own pid
    file, for a second server on the home), once it answers with a champion; its URL."""
    service = dataclasses.replace(local_servers.bentoml_service(config), name=name)
    local_servers.start(service, timeout=240)
    url = f"http://{config.serving.host}:{config.serving.port}"
    try:
        assert local_servers.wait_healthy(f"{url}/readyz", 120), "no champion served"
        yield url
    finally:
        local_servers.stop(service)


@contextlib.contextmanager
def served_champion(
    home: Path,
    mlflow_server: PlatformConfig,
    demo: DemoData,
    model_name: str,
    training_frame: pd.DataFrame,
    model: TabularModel,
) -> Iterator[tuple[PlatformConfig, str]]:
    """``model`` registered and promoted as ``model_name``'s champion, served from a home of
    its own (:func:`serving_home`); its config and URL."""
    config = serving_home(home, mlflow_server, demo, model_name)
    version = register(config, training_frame, model)
    registry.promote(config.mlflow.tracking_uri, model_name, version)
    with serving(config) as url:
        yield config, url
