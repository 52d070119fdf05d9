"""The submit path, without a cluster: a stand-in for kfp.Client records each call after
binding it to the real method's signature (a wrong keyword fails here as it would there),
and the uploaded package is the compiled spec."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kfp
import pytest
import yaml

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json, load_config
from pipelines import submit
from pipelines.training import pipeline_name

CLUSTER = PROJECT_ROOT / "configs" / "cluster.yaml"


class FakeClient:
    """Answers like the KFP API; ``known`` says whether the pipeline was uploaded before."""

    def __init__(self, known: bool = False, schedules: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.known = known
        self.schedules = schedules
        self.packages: list[list[dict[str, Any]]] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = inspect.signature(getattr(kfp.Client, name)).bind(self, *args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        self.calls.append((name, arguments))
        return arguments

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def call(self, name: str) -> dict[str, Any]:
        return next(arguments for n, arguments in self.calls if n == name)

    def get_pipeline_id(self, *args: Any, **kwargs: Any) -> str | None:
        self._record("get_pipeline_id", *args, **kwargs)
        return "pipe-1" if self.known else None

    def _keep(self, arguments: dict[str, Any]) -> None:
        text = Path(arguments["pipeline_package_path"]).read_text()
        self.packages.append([d for d in yaml.safe_load_all(text) if d])

    def upload_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self._keep(self._record("upload_pipeline", *args, **kwargs))
        return SimpleNamespace(pipeline_id="pipe-1")

    def list_pipeline_versions(self, *args: Any, **kwargs: Any) -> Any:
        self._record("list_pipeline_versions", *args, **kwargs)
        return SimpleNamespace(pipeline_versions=[SimpleNamespace(pipeline_version_id="ver-1")])

    def upload_pipeline_version(self, *args: Any, **kwargs: Any) -> Any:
        self._keep(self._record("upload_pipeline_version", *args, **kwargs))
        return SimpleNamespace(pipeline_version_id="ver-2")

    def create_experiment(self, *args: Any, **kwargs: Any) -> Any:
        self._record("create_experiment", *args, **kwargs)
        return SimpleNamespace(experiment_id="exp-1")

    def run_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self._record("run_pipeline", *args, **kwargs)
        return SimpleNamespace(run_id="run-1")

    def list_recurring_runs(self, *args: Any, **kwargs: Any) -> Any:
        self._record("list_recurring_runs", *args, **kwargs)
        runs = [
            SimpleNamespace(display_name=name, recurring_run_id=f"rec-{i}")
            for i, name in enumerate(self.schedules)
        ]
        return SimpleNamespace(recurring_runs=runs or None)

    def delete_recurring_run(self, *args: Any, **kwargs: Any) -> Any:
        self._record("delete_recurring_run", *args, **kwargs)
        return {}

    def create_recurring_run(self, *args: Any, **kwargs: Any) -> Any:
        self._record("create_recurring_run", *args, **kwargs)
        return SimpleNamespace(recurring_run_id="rec-new")


@pytest.fixture
def cluster() -> PlatformConfig:
    return load_config(CLUSTER)


def test_first_submit_uploads_the_pipeline_and_starts_a_run(cluster: PlatformConfig) -> None:
    fake = FakeClient(known=False)
    done = submit.submit(cluster, "abc123", host="https://kfp.example/", client=fake)
    assert fake.names() == [
        "get_pipeline_id",
        "upload_pipeline",
        "list_pipeline_versions",
        "create_experiment",
        "run_pipeline",
    ]
    assert fake.call("upload_pipeline")["pipeline_name"] == pipeline_name(cluster)
    assert pipeline_name(cluster) == "loan-default-training"
    assert fake.call("create_experiment") == {"name": "loan-default", "namespace": "aiinfra"}
    run = fake.call("run_pipeline")
    assert run["experiment_id"] == "exp-1"
    assert (run["pipeline_id"], run["version_id"]) == ("pipe-1", "ver-1")
    assert run["service_account"] == "aiinfra-pipeline"
    assert "enable_caching" not in run, "the compiled spec decides caching per task"
    assert run["params"]["git_commit"] == "abc123"
    assert config_from_json(run["params"]["config_json"]) == cluster
    assert done.run_id == "run-1" and done.url == "https://kfp.example/#/runs/details/run-1"
    # What was uploaded is the cluster spec: its image, its volume.
    spec, platform = fake.packages[0]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {cluster.kfp.image}
    assert "exec-train-model" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_later_submits_add_a_version_named_after_the_commit(cluster: PlatformConfig) -> None:
    fake = FakeClient(known=True)
    submit.submit(cluster, "abc123", client=fake)
    assert "upload_pipeline" not in fake.names()
    version = fake.call("upload_pipeline_version")
    assert version["pipeline_id"] == "pipe-1"
    assert version["pipeline_version_name"].startswith("abc123-")
    assert fake.call("run_pipeline")["version_id"] == "ver-2"


def test_schedule_replaces_the_recurring_run(cluster: PlatformConfig) -> None:
    fake = FakeClient(known=True, schedules=(f"{pipeline_name(cluster)}-scheduled", "someone-else"))
    done = submit.schedule(cluster, "abc123", client=fake)
    assert fake.call("delete_recurring_run") == {"recurring_run_id": "rec-0"}
    assert fake.names().count("delete_recurring_run") == 1  # only ours
    created = fake.call("create_recurring_run")
    assert created["cron_expression"] == cluster.kfp.schedule == "0 0 3 * * 1"
    assert created["max_concurrency"] == 1 and created["no_catchup"] is True
    assert created["version_id"] == "ver-2"
    assert config_from_json(created["params"]["config_json"]) == cluster
    assert done.run_id == "rec-new"
    submit.schedule(cluster, "abc123", cron="0 30 1 * * *", client=FakeClient(known=True))


def test_auth_comes_from_the_environment(
    cluster: PlatformConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A namespace is configured, so the client makes no call while being built.
    monkeypatch.setenv(submit.TOKEN_ENV, "t0ken")
    client = submit.connect(cluster, "http://127.0.0.1:9")
    assert client._existing_config.api_key["authorization"] == "t0ken"
    assert client._existing_config.host == "http://127.0.0.1:9"

    monkeypatch.delenv(submit.TOKEN_ENV)
    sa_token = tmp_path / "token"
    sa_token.write_text("from-the-service-account")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(sa_token))
    config = submit.connect(cluster, "http://127.0.0.1:9")._existing_config
    config.refresh_api_key_hook(config)
    assert config.api_key["authorization"] == "from-the-service-account"

    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))
    assert not submit.connect(cluster, "http://127.0.0.1:9")._existing_config.api_key


def test_cli_submit_reports_an_unreachable_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIINFRA_", "KFP_"))}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "aiinfra_cli.main", "--config", str(CLUSTER), "submit"),
            *("--host", "http://127.0.0.1:9", "--git-commit", "abc"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "submit failed" in done.stderr
