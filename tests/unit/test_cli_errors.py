"""Expected failures at the command line: one line that names the cause (and the setting that
fixes it), the right exit code, no traceback, and no server started or stopped by mistake."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT
from aiinfra_cli.main import global_options_first
from tests.conftest import SMOKE, mlflow_env, run_cli, smoke_config


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_is_one_line_at_once_and_starts_nothing(
    tmp_path: Path, held_port: int
) -> None:
    started = time.monotonic()
    done = run_cli(
        tmp_path,
        "up",
        env=mlflow_env(held_port),
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{held_port} is already in use" in lines[0], lines
    assert "AIINFRA_MLFLOW__PORT" in lines[0] and "Traceback" not in done.stderr
    assert elapsed < 15  # the interpreter's start included; the check itself is immediate
    assert local_servers.running_pid(local_servers.mlflow_service(smoke_config(tmp_path))) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"AIINFRA_TRAINING__EPOCHS": "-3"},
            "environment variable AIINFRA_TRAINING__EPOCHS=-3: training.epochs = '-3': "
            "Input should be greater than or equal to 1",
        ),
        (
            {"AIINFRA_TRAINING__EPOCHZ": "3"},
            "environment variable AIINFRA_TRAINING__EPOCHZ: names no setting; "
            "did you mean AIINFRA_TRAINING__EPOCHS?",
        ),
        (
            {"AIINFRA_SERVING__PORT": "http"},
            "environment variable AIINFRA_SERVING__PORT=http: serving.port = 'http': "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_a_config_error_names_its_environment_variable(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = run_cli(tmp_path, "check", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"config: {expected}", done.stderr


def _profile(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """The smoke profile with one line changed, and that line's number."""
    lines = SMOKE.read_text().replace("root: ..", f"root: {PROJECT_ROOT}").splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith(old))
    lines[number] = lines[number].replace(old, new)
    profile = tmp_path / "profile.yaml"
    profile.write_text("\n".join(lines) + "\n")
    return profile, number + 1


def test_a_typo_in_the_profile_names_the_file_line_and_the_closest_key(tmp_path: Path) -> None:
    profile, line = _profile(tmp_path, "training:", "trainig:")
    done = run_cli(tmp_path, "check", config=profile)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"config: {profile}:{line}: unknown setting 'trainig'; did you mean 'training'?"
    )


def test_a_bad_value_in_the_profile_names_the_file_line_and_what_is_allowed(
    tmp_path: Path,
) -> None:
    profile, line = _profile(tmp_path, "  epochs:", "  epochs: -2 #")
    done = run_cli(tmp_path, "check", config=profile)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"config: {profile}:{line}: training.epochs = -2: "
        "Input should be greater than or equal to 1"
    )


def test_global_options_work_after_the_command(tmp_path: Path) -> None:
    """--home after the command is applied: the missing label table is looked for there."""
    done = subprocess.run(
        [sys.executable, "-m", "aiinfra_cli.main", "check", "--config", str(SMOKE),
         "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "No such option" not in done.stderr
    assert str(tmp_path) in done.stdout + done.stderr, done.stderr


def test_global_options_move_before_the_command_with_their_values() -> None:
    args = ["run", "--git-commit", "abc", "--config", "x.yaml", "--verbose", "--home=h"]
    assert global_options_first(args) == [
        "--config", "x.yaml", "--verbose", "--home=h", "run", "--git-commit", "abc"
    ]  # fmt: skip
    assert global_options_first(["--config", "x.yaml", "run"]) == ["--config", "x.yaml", "run"]
    assert global_options_first(["init", "d", "--", "--home"]) == ["init", "d", "--", "--home"]


def test_run_with_the_mlflow_port_taken_fails_at_once_and_stops_no_other_server(
    tmp_path: Path, held_port: int
) -> None:
    """The case a user met: `run` waited 120 s, then stopped the MLflow server already running
    for the same home on another port."""
    config = smoke_config(tmp_path)  # its own free MLflow port
    mlflow = local_servers.mlflow_service(config)
    env = mlflow_env(config.mlflow.port)
    assert run_cli(tmp_path, "data", "generate").returncode == 0  # `run` checks the data first
    assert run_cli(tmp_path, "up", env=env).returncode == 0
    pid = local_servers.running_pid(mlflow)
    try:
        started = time.monotonic()
        done = run_cli(
            tmp_path,
            "run",
            env=mlflow_env(held_port),
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 1 and "Traceback" not in done.stderr
        first = done.stderr.strip().splitlines()[0]
        assert f"already runs on port {config.mlflow.port} (pid {pid})" in first, done.stderr
        assert "aiinfra down" in first
        assert elapsed < 30  # no wait for a server that cannot come
        assert local_servers.running_pid(mlflow) == pid  # still the same server
    finally:
        local_servers.stop(mlflow)
