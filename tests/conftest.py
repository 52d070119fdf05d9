"""Shared fixtures: a smoke-sized platform home per test session, real servers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from aiinfra.data import demo_data
from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"


def run_cli(
    home: Path, *args: str, config: Path = SMOKE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``aiinfra --config CONFIG --home HOME ARGS...`` as a user runs it, in a subprocess."""
    command = [sys.executable, "-m", "aiinfra_cli.main", "--config", str(config)]
    return subprocess.run(
        [*command, "--home", str(home), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


free_port = local_servers.free_port


def smoke_config(home: Path, poll_seconds: float = 0.5, **overrides: object) -> PlatformConfig:
    mlflow_port = free_port()
    return load_config(
        SMOKE,
        home=home,
        mlflow={"port": mlflow_port, "tracking_uri": f"http://127.0.0.1:{mlflow_port}"},
        serving={"port": free_port(), "poll_seconds": poll_seconds},
        **overrides,
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> demo_data.DemoData:
    """The smoke-sized demo tables, generated once."""
    config = load_config(SMOKE, home=tmp_path_factory.mktemp("demo"))
    return demo_data.generate(config.data)


@pytest.fixture(scope="session")
def training_frame(
    tmp_path_factory: pytest.TempPathFactory, demo: demo_data.DemoData
) -> pd.DataFrame:
    """A point-in-time training set built through a real Feast repo."""
    from aiinfra import steps

    config = smoke_config(tmp_path_factory.mktemp("features"))
    demo.write(config.data_dir)
    out = config.home / "training_set.parquet"
    steps.build_training_set(config, out)
    return pd.read_parquet(out)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    """A real MLflow server (sqlite backend, proxied artifacts) on a free loopback port."""
    config = smoke_config(tmp_path_factory.mktemp("mlflow-home"))
    service = local_servers.mlflow_service(config)
    local_servers.start(service)
    yield config
    local_servers.stop(service)
