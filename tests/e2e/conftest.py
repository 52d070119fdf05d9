"""A platform home with its MLflow server, the project's data and a materialized feature
store: what every end-to-end test starts from, whatever the project."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig
from aiinfra_cli.workflow import (
    TrainingOutcome,
    apply_features,
    generate_data,
    run_training,
    start_serving,
)
from tests.conftest import smoke_config


def running_platform(config: PlatformConfig) -> Iterator[PlatformConfig]:
    local_servers.start(local_servers.mlflow_service(config))
    generate_data(config, force=True)
    apply_features(config)
    try:
        yield config
    finally:
        for service in (
            local_servers.bentoml_service(config),
            local_servers.mlflow_service(config),
        ):
            local_servers.stop(service)


# The loan example's platform, trained and serving once for the whole session: the platform
# tests and the hardening tests share it (each pipeline run costs about a minute).
@pytest.fixture(scope="session")
def loan_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    # The service polls the registry only every 2 minutes: a deployment within seconds of
    # a promotion can only come from the registry's webhook.
    config = smoke_config(tmp_path_factory.mktemp("platform"), poll_seconds=120)
    # Every promotion of this home is served and checked first, as on the local profile.
    check = config.gate.serving_check.model_copy(update={"enabled": True})
    config.gate = config.gate.model_copy(update={"serving_check": check})
    yield from running_platform(config)


@pytest.fixture(scope="session")
def loan_first_run(loan_platform: PlatformConfig) -> TrainingOutcome:
    return run_training(loan_platform, commit="abc123def456")


@pytest.fixture(scope="session")
def loan_service_url(loan_platform: PlatformConfig, loan_first_run: TrainingOutcome) -> str:
    return start_serving(loan_platform)
