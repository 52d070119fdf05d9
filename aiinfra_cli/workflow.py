"""What the CLI commands do, as functions (the CLI only parses and prints)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pandas as pd

from aiinfra import registry, schema, services
from aiinfra.config import PlatformConfig
from pipelines.local import run_local


@dataclass(frozen=True)
class TrainingOutcome:
    version: str
    gate: str
    gate_reason: str
    champion_before: str | None
    champion_after: str | None
    run_dir: Path

    @property
    def promoted(self) -> bool:
        return self.champion_after == self.version and self.champion_before != self.version

    def describe(self) -> str:
        move = (
            f"promoted: @champion {self.champion_before or 'none'} -> {self.version}"
            if self.promoted
            else f"not promoted: @champion stays at {self.champion_after or 'none'}"
        )
        return f"registered version {self.version}; gate {self.gate} ({self.gate_reason}); {move}"


def uses_local_mlflow(config: PlatformConfig) -> bool:
    """True when the tracking URI is the server this profile runs itself."""
    url = urlparse(config.mlflow.tracking_uri)
    return (
        url.scheme == "http"
        and url.hostname == config.mlflow.host
        and url.port == config.mlflow.port
    )


def ensure_mlflow(config: PlatformConfig) -> None:
    if uses_local_mlflow(config):
        services.start(services.mlflow_service(config))


def run_training(config: PlatformConfig, commit: str | None = None) -> TrainingOutcome:
    ensure_mlflow(config)
    uri, name = config.mlflow.tracking_uri, config.mlflow.model_name
    before = registry.alias_version(uri, name, registry.CHAMPION)
    result = run_local(config, commit)
    tags = registry.version_tags(uri, name, result.version)
    after = registry.alias_version(uri, name, registry.CHAMPION)
    return TrainingOutcome(
        result.version,
        tags.get("gate", "?"),
        tags.get("gate_reason", ""),
        before,
        after,
        result.run_dir,
    )


def register_webhook(config: PlatformConfig) -> str:
    """Point the registry's alias webhook at the service's hook; returns the service URL."""
    from mlflow.exceptions import MlflowException

    from aiinfra import webhooks

    base_url = f"http://{config.serving.host}:{config.serving.port}"
    try:
        webhooks.register(
            config.mlflow.tracking_uri,
            name=f"aiinfra-deploy-{config.serving.port}",
            url=f"{base_url}/hooks/mlflow",
            secret=services.webhook_secret(config),
        )
    except MlflowException as exc:
        raise RuntimeError(
            f"the registry refused the deployment webhook ({exc.message}); an MLflow server "
            "started by an older version lacks the loopback webhook settings: "
            "`aiinfra down && aiinfra up` restarts it"
        ) from exc
    return base_url


def start_serving(config: PlatformConfig) -> str:
    """Start (or reuse) the BentoML service, wired to the registry's webhook."""
    services.start(services.bentoml_service(config), timeout=240)
    return register_webhook(config)


def sample_request(config: PlatformConfig) -> dict[str, Any]:
    """The most recent application in the demo data, as a request body."""
    loans = pd.read_parquet(config.data_dir / "loans.parquet")
    latest = loans.sort_values(schema.EVENT_TIMESTAMP).iloc[-1]
    fields = [*schema.ENTITY_KEYS, *(f.name for f in schema.REQUEST_FEATURES)]
    row = {k: latest[k].item() if hasattr(latest[k], "item") else latest[k] for k in fields}
    return {"rows": [row]}


def wait_for_version(
    base_url: str, body: dict[str, Any], version: str, timeout: float
) -> dict[str, Any]:
    """Predict until the service answers with ``version`` (it follows @champion by polling)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"{base_url}/predict", json=body, timeout=10)
            last = response.text
            if response.status_code == 200 and response.json()["model_version"] == version:
                return dict(response.json())
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise TimeoutError(
        f"service did not serve version {version} within {timeout:.0f}s; last answer: {last}"
    )


def quickstart(config: PlatformConfig, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    from aiinfra import demo_data, feature_store

    ensure_mlflow(config)
    echo(f"MLflow:   {config.mlflow.tracking_uri}")
    if not (config.data_dir / "loans.parquet").exists():
        demo_data.write_demo_data(config.data, config.data_dir)
        echo(f"data:     generated demo tables in {config.data_dir}")
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    feature_store.materialize(store, repo, datetime.now(UTC))
    echo(f"features: applied {config.features.repo_path.name} and materialized the online store")
    outcome = run_training(config)
    echo(f"pipeline: {outcome.describe()}")
    base_url = start_serving(config)
    champion = outcome.champion_after or outcome.version
    body = sample_request(config)
    answer = wait_for_version(base_url, body, champion, timeout=120)
    echo(f"serving:  {base_url} (docs: {base_url}/docs, metrics: {base_url}/metrics)")
    return {
        "mlflow_ui": config.mlflow.tracking_uri,
        "serving_url": base_url,
        "registered_version": outcome.version,
        "champion": champion,
        "promoted": outcome.promoted,
        "sample_request": body,
        "sample_response": answer,
    }
