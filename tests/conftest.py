"""Shared fixtures: a smoke-sized platform home per test session, real servers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.project.schema import Schema
from examples.loan_default import data as demo_data

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"


def run_cli(
    home: Path | None,
    *args: str,
    config: Path = SMOKE,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``aiinfra --config CONFIG --home HOME ARGS...`` as a user runs it, in a subprocess
    (``home`` None: the profile's own)."""
    command = [sys.executable, "-m", "aiinfra_cli.main", "--config", str(config)]
    return subprocess.run(
        [*command, *(["--home", str(home)] if home is not None else []), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


free_port = local_servers.free_port


def mlflow_env(port: int) -> dict[str, str]:
    """The environment that points a CLI run at a local MLflow server on ``port`` (the two
    settings move together: see ``profile_config``)."""
    return {
        "AIINFRA_MLFLOW__PORT": str(port),
        "AIINFRA_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{port}",
    }


def profile_config(
    profile: Path, home: Path, poll_seconds: float = 0.5, **overrides: object
) -> PlatformConfig:
    """``profile`` with its own home and free loopback ports for MLflow and BentoML."""
    mlflow_port = free_port()
    return load_config(
        profile,
        home=home,
        mlflow={"port": mlflow_port, "tracking_uri": f"http://127.0.0.1:{mlflow_port}"},
        serving={"port": free_port(), "poll_seconds": poll_seconds},
        **overrides,
    )


def smoke_config(home: Path, poll_seconds: float = 0.5, **overrides: object) -> PlatformConfig:
    """The loan example's smoke profile (tiny data, a few epochs)."""
    return profile_config(SMOKE, home, poll_seconds, **overrides)


def demo_settings() -> demo_data.DataConfig:
    """The loan example's generator settings of the smoke profile."""
    generator = load_config(SMOKE).project.generator
    assert generator is not None
    return demo_data.DataConfig.model_validate(generator.settings)


@pytest.fixture(scope="session")
def demo() -> demo_data.DemoData:
    """The smoke-sized demo tables, generated once."""
    return demo_data.generate(demo_settings())


@pytest.fixture(scope="session")
def smoke_training_set(
    tmp_path_factory: pytest.TempPathFactory, demo: demo_data.DemoData
) -> tuple[pd.DataFrame, Schema]:
    """A point-in-time training set of the loan example built through a real Feast repo, and
    the schema it carries."""
    from aiinfra import steps
    from aiinfra.data.training_set import read_training_set

    config = smoke_config(tmp_path_factory.mktemp("features"))
    demo.write(config.data_dir)
    out = config.home / "training_set.parquet"
    steps.build_training_set(config, out)
    return read_training_set(out)


@pytest.fixture(scope="session")
def training_frame(smoke_training_set: tuple[pd.DataFrame, Schema]) -> pd.DataFrame:
    return smoke_training_set[0]


@pytest.fixture(scope="session")
def schema(smoke_training_set: tuple[pd.DataFrame, Schema]) -> Schema:
    """The loan example's schema (binary task), as built from its Feast repo and label table."""
    return smoke_training_set[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    """A real MLflow server (sqlite backend, proxied artifacts) on a free loopback port."""
    config = smoke_config(tmp_path_factory.mktemp("mlflow-home"))
    service = local_servers.mlflow_service(config)
    local_servers.start(service)
    yield config
    local_servers.stop(service)


# Under `pytest -n` (make test): a test module runs on one worker from start to end, so its
# module fixtures (a platform home, its servers) are built once and its tests keep their
# order; modules that share a session-scoped home run on the same worker as well.
SHARED_HOME = {"tests/e2e/test_service_hardening.py": "tests/e2e/test_platform.py"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_HOME.get(module, module)

    return ByModule(config, log)
