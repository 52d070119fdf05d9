"""A platform home with its MLflow server, demo data and a materialized feature store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from aiinfra.data import demo_data, feature_store
from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig


def running_platform(config: PlatformConfig) -> Iterator[PlatformConfig]:
    local_servers.start(local_servers.mlflow_service(config))
    demo_data.write_demo_data(config.data, config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    feature_store.materialize(store, repo, datetime.now(UTC))
    try:
        yield config
    finally:
        for service in (local_servers.bentoml_service(config), local_servers.mlflow_service(config)):
            local_servers.stop(service)
