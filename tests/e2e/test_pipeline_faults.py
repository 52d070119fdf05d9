"""Crashes in the middle of a training run, for real: the run's process is SIGKILLed at each
step in turn, in the middle of registration, and the MLflow server itself is killed while a
version is being registered. After every crash: no half-described or duplicated version is
visible, ``@champion`` names only a version that passed, and running again completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from aiinfra.release import registry
from tests.conftest import smoke_config
from tests.e2e.conftest import running_platform

pytestmark = pytest.mark.e2e
STEPS = [
    "build-training-set",
    "validate-data",
    "train-model",
    "evaluate-model",
    "register-model",
    "promote-model",
]
# Tags every version is created with, all at once (registry.log_and_register).
WHOLE = {"validation", "gate", "data_hash", "eval_hash", "pipeline_run", "champion_at_evaluation"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    yield from running_platform(smoke_config(tmp_path_factory.mktemp("faults")))


def _start(config: PlatformConfig, run: str) -> subprocess.Popen[str]:
    config_file = config.home / f"{run}.json"
    config_file.write_text(config.to_json())
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.e2e.pipeline_runner",
            str(config_file),
            run,
            str(config.home / "runs" / run),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A failing registry fails the run within seconds, not after MLflow's minutes of retries.
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"},
        start_new_session=True,
    )


def _run_until(config: PlatformConfig, run: str, step: str) -> None:
    """Start a run and SIGKILL it (its whole process group) as ``step`` starts."""
    process = _start(config, run)
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == f"STEP {step}":
            os.killpg(process.pid, signal.SIGKILL)
            break
    else:
        pytest.fail(f"run {run} ended before {step}")
    process.wait(timeout=30)


def _complete(config: PlatformConfig, run: str) -> str:
    process = _start(config, run)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    return out


def _assert_consistent(config: PlatformConfig) -> None:
    uri, name = config.mlflow.tracking_uri, config.model_name
    versions = registry.client(uri).search_model_versions(f"name = '{name}'")
    runs = [v.tags.get("pipeline_run") for v in versions]
    assert len(runs) == len(set(runs)), f"a pipeline run registered twice: {runs}"
    for v in versions:
        assert set(v.tags) >= WHOLE, f"version {v.version} is missing {WHOLE - set(v.tags)}"
    champion = registry.alias_version(uri, name, registry.CHAMPION)
    if champion is not None:
        assert registry.passed_checks(registry.version_tags(uri, name, champion))


def test_a_run_killed_at_each_step_leaves_nothing_half_done_and_a_rerun_completes(
    platform: PlatformConfig,
) -> None:
    for attempt, step in enumerate(STEPS):
        _run_until(platform, f"killed-at-{step}", step)
        _assert_consistent(platform)
        if attempt < STEPS.index("promote-model"):
            assert (
                registry.alias_version(
                    platform.mlflow.tracking_uri, platform.model_name, registry.CHAMPION
                )
                is None
            )
    out = _complete(platform, "after-the-kills")
    assert "DONE" in out and "promoted" in out, out[-2000:]
    _assert_consistent(platform)


def test_a_register_task_killed_midway_and_retried_registers_once(
    platform: PlatformConfig,
) -> None:
    """Killed while its MLflow run is being written; the retry (same pipeline run, as a
    Kubeflow retry would be) finishes it with one version, never two."""
    uri, name = platform.mlflow.tracking_uri, platform.model_name
    c = registry.client(uri)
    process = _start(platform, "killed-midway")
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "STEP register-model":
            break
    experiment = registry.experiment_id(c, platform.experiment)
    deadline = time.monotonic() + 60
    while not c.search_runs([experiment], "attributes.run_name = 'killed-midway'"):
        assert time.monotonic() < deadline and process.poll() is None, "no run was started"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    _assert_consistent(platform)
    _complete(platform, "killed-midway")
    _complete(platform, "killed-midway")  # and once more: still one version for this run
    mine = c.search_model_versions(f"name = '{name}' and tags.pipeline_run = 'killed-midway'")
    assert len(mine) == 1
    _assert_consistent(platform)


def test_mlflow_killed_during_registration_fails_the_run_closed_and_a_rerun_succeeds(
    platform: PlatformConfig,
) -> None:
    uri, name = platform.mlflow.tracking_uri, platform.model_name
    before = {v.version for v in registry.client(uri).search_model_versions(f"name = '{name}'")}
    champion = registry.alias_version(uri, name, registry.CHAMPION)
    mlflow = local_servers.mlflow_service(platform)
    process = _start(platform, "mlflow-killed")
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "STEP register-model":
            local_servers.stop(mlflow)
            break
    rest, _ = process.communicate(timeout=300)
    assert process.returncode != 0, rest[-2000:]
    local_servers.start(mlflow)
    _assert_consistent(platform)
    after = {v.version for v in registry.client(uri).search_model_versions(f"name = '{name}'")}
    if after != before:  # the version was created just before the server died: it is whole
        assert len(after - before) == 1
    assert registry.alias_version(uri, name, registry.CHAMPION) == champion
    out = _complete(platform, "mlflow-killed")
    assert "DONE" in out
    _assert_consistent(platform)
