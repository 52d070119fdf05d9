"""A platform home with its MLflow server, demo data and a materialized feature store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from aiinfra import demo_data, feature_store, services
from aiinfra.config import PlatformConfig


def running_platform(config: PlatformConfig) -> Iterator[PlatformConfig]:
    services.start(services.mlflow_service(config))
    demo_data.write_demo_data(config.data, config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    feature_store.materialize(store, repo, datetime.now(UTC))
    try:
        yield config
    finally:
        for service in (services.bentoml_service(config), services.mlflow_service(config)):
            services.stop(service)
