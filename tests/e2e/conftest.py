"""A platform home with its MLflow server, the project's data and a materialized feature
store: what every end-to-end test starts from, whatever the project."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig
from aiinfra_cli.workflow import apply_features, generate_data


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
