"""What the CLI commands do, as functions (the CLI only parses and prints)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from mlflow.exceptions import MlflowException

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig
from aiinfra.project.definition import Project
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from pipelines.local import run_local


@dataclass(frozen=True)
class TrainingOutcome:
    version: str
    gate: str
    gate_reason: str
    champion_before: str | None
    champion_after: str | None
    run_dir: Path
    reports: dict[str, Path] = field(default_factory=dict)
    mlflow_run: str | None = None  # the run's page in the MLflow UI
    serving_check: str | None = None  # "passed: <why>" when one ran before the promotion

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

    def results(self) -> list[str]:
        """The results block: what the run decided and where to look."""
        champion = (
            f"{self.champion_before or 'none'} -> {self.version} (promoted)"
            if self.promoted
            else f"stays at {self.champion_after or 'none'} (not promoted)"
        )
        lines = [
            f"version      {self.version}",
            f"gate         {self.gate}: {self.gate_reason}",
            *([f"server check {self.serving_check}"] if self.serving_check else []),
            f"champion     {champion}",
        ]
        labels = {
            "validation-report.html": "validation",
            "gate-report.md": "gate report",
            "model-card.md": "model card",
        }
        lines += [
            f"{labels[name]:<12} {path}" for name, path in self.reports.items() if name in labels
        ]
        if self.mlflow_run:
            lines.append(f"MLflow run   {self.mlflow_run}")
        return lines


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
        local_servers.start(local_servers.mlflow_service(config))


def run_training(
    config: PlatformConfig,
    commit: str | None = None,
    checked: Project | None = None,
    trigger: str = "",
) -> TrainingOutcome:
    """Check the project (a bad definition stops here, before any task), then run the
    pipeline on kfp.local. ``checked``: the project as a caller already checked it;
    ``trigger``: why a monitoring rule started the run."""
    from aiinfra.steps import check_project

    if checked is None:  # quickstart has checked it already
        check_project(config)
    ensure_mlflow(config)
    uri, name = config.mlflow.tracking_uri, config.model_name
    before = registry.alias_version(uri, name, registry.CHAMPION)
    result = run_local(config, commit, trigger)
    tags = registry.version_tags(uri, name, result.version)
    after = registry.alias_version(uri, name, registry.CHAMPION)
    return TrainingOutcome(
        result.version,
        tags.get("gate", "?"),
        tags.get("gate_reason", ""),
        before,
        after,
        result.run_dir,
        result.reports,
        mlflow_run_page(uri, name, result.version),
        _serving_check(tags),
    )


def _serving_check(tags: dict[str, str]) -> str | None:
    if "serving_check" not in tags:
        return None
    return f"{tags['serving_check']}: {tags.get('serving_check_reason', '')}"


def mlflow_run_page(tracking_uri: str, name: str, version: str) -> str | None:
    """The MLflow UI page of the run that registered ``version`` (servers only)."""
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return None
    c = registry.client(tracking_uri)
    run_id = c.get_model_version(name, version).run_id
    experiment = c.get_run(run_id).info.experiment_id
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def register_webhook(config: PlatformConfig) -> str:
    """Point the registry's alias webhook at the service's hook; returns the service URL."""
    from aiinfra.release import webhooks

    base_url = f"http://{config.serving.host}:{config.serving.port}"
    try:
        with _quick_mlflow_calls():
            webhooks.register(
                config.mlflow.tracking_uri,
                name=f"aiinfra-deploy-{config.serving.port}",
                url=f"{base_url}/hooks/mlflow",
                secret=local_servers.webhook_secret(config),
            )
    except MlflowException as exc:
        raise RuntimeError(_webhook_refused(config, exc)) from exc
    return base_url


# MLflow's client retries a failing call for minutes (7 times, waits doubling from 2 s): the
# webhook call either works at once or will not, so it gets one quick retry. Values the user
# set stay in force.
_QUICK_MLFLOW_CALLS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@contextlib.contextmanager
def _quick_mlflow_calls() -> Iterator[None]:
    """MLflow's client reads these settings from the environment on each call."""
    added = [name for name in _QUICK_MLFLOW_CALLS if name not in os.environ]
    os.environ.update({name: _QUICK_MLFLOW_CALLS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _webhook_refused(config: PlatformConfig, exc: MlflowException) -> str:
    if exc.error_code == "INVALID_PARAMETER_VALUE":
        return (
            f"the registry refused the deployment webhook ({exc.message}); an MLflow server "
            "started by an older version lacks the loopback webhook settings: "
            "`aiinfra down && aiinfra up` restarts it"
        )
    return (
        f"the registry at {config.mlflow.tracking_uri} failed on its webhooks ({exc.message}). "
        "If it answers 500: an MLflow server started without a persistent "
        f"{local_servers.ENCRYPTION_KEY_ENV} (`aiinfra up` keeps one in {config.run_dir}) "
        "cannot read the webhooks it stored before it restarted; delete them from the "
        "`webhooks` table of its backend store, then serve again"
    )


def start_serving(config: PlatformConfig) -> str:
    """Start (or reuse) the BentoML service, wired to the registry's webhook. The webhook comes
    first: a registry that refuses it fails in seconds, and leaves no service behind."""
    service = local_servers.bentoml_service(config)
    local_servers.check_startable(service)  # before the webhook points at the port
    base_url = register_webhook(config)
    local_servers.start(service, timeout=240)
    # The service loads @champion in the background (so it is alive while the registry is
    # slow): when there is one, "started" means answering with it.
    champion = registry.alias_version(
        config.mlflow.tracking_uri, config.model_name, registry.CHAMPION
    )
    if champion is not None and not local_servers.wait_healthy(f"{base_url}/readyz", 120):
        raise RuntimeError(
            f"the service at {base_url} is up but not ready after 120 s: it could not load "
            f"@champion or reach the feature store (see {config.run_dir / 'bentoml.log'})"
        )
    return base_url


def sample_request(config: PlatformConfig, schema: Schema) -> dict[str, Any]:
    """The most recent row of the label table, as a request body."""
    from aiinfra.project.definition import read_label_table

    labels = read_label_table(config.labels_path, schema.timestamp)
    latest = labels.sort_values(schema.timestamp).iloc[-1]
    fields = [*schema.entity_names, *(f.name for f in schema.request_features)]
    row = {k: latest[k].item() if hasattr(latest[k], "item") else latest[k] for k in fields}
    return {"rows": [row]}


def generate_data(config: PlatformConfig, force: bool = False) -> bool:
    """Run the project's data generator (demo projects) unless its label table exists; True if
    it ran."""
    generator = config.project.generator
    if generator is None or (config.labels_path.exists() and not force):
        return False
    from aiinfra.project.entry_points import resolve

    write = resolve(generator.entry_point, config.project.root, "project.generator.entry_point")
    write(config.data_dir, **generator.settings)
    return True


def apply_features(config: PlatformConfig) -> int:
    """Register the project's Feast objects and materialize its service's views up to now;
    returns how many objects were applied."""
    from aiinfra.data import feature_store

    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    feature_store.materialize(store, repo, config.features.feature_service, datetime.now(UTC))
    return len(repo.objects())


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


def quickstart(config: PlatformConfig, say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Everything on one machine, saying one line per stage (the pipeline's tasks are shown
    by the caller's console as they run)."""
    import json

    from aiinfra.steps import check_project

    ensure_mlflow(config)
    say(f"MLflow       {config.mlflow.tracking_uri}")
    if generate_data(config):
        say(f"data         generated the project's tables in {config.data_dir}")
    project = check_project(config)
    ignored = project.ignored_columns
    say(
        f"project      {config.project.name} ({config.project.task}): {project.label_rows} rows, "
        f"{len(project.schema.features)} features"
        + (f"; ignored columns: {', '.join(ignored)}" if ignored else "")
    )
    apply_features(config)
    say(f"features     applied {config.repo_path}; online store materialized")
    say("pipeline")
    outcome = run_training(config, checked=project)
    for line in outcome.results():
        say(line)
    base_url = start_serving(config)
    champion = outcome.champion_after or outcome.version
    body = sample_request(config, project.schema)
    answer = wait_for_version(base_url, body, champion, timeout=120)
    say(f"serving      {base_url}  (API docs {base_url}/docs, metrics {base_url}/metrics)")
    say(
        "try          curl -s -H 'Content-Type: application/json' "
        f"-d '{json.dumps(body, separators=(',', ':'))}' {base_url}/predict"
    )
    say(f"answer       {json.dumps(answer, separators=(',', ':'))}")
    return {
        "mlflow_ui": config.mlflow.tracking_uri,
        "serving_url": base_url,
        "registered_version": outcome.version,
        "champion": champion,
        "promoted": outcome.promoted,
        "sample_request": body,
        "sample_response": answer,
    }
