"""The platform as a person meets it at a terminal: `quickstart` in a pseudo-terminal shows a
short screen that ends in the results, with no warnings and no traceback, and every path and
URL it names is real. (Expected failures: tests/unit/test_cli_errors.py.)"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aiinfra.project.config import PROJECT_ROOT
from tests.conftest import SMOKE, free_port, mlflow_env

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "aiinfra_cli.main"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdout and stderr; its raw output."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        args, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=PROJECT_ROOT
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    else:
        process.kill()
    os.close(primary)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def screen(raw: str) -> list[str]:
    """What stays on the screen: each carriage return rewrites its line, as a terminal does."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        visible = _ANSI.sub("", line.split("\r")[-1]).rstrip()
        if visible:
            lines.append(visible)
    return lines


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, Path]]:
    home = tmp_path_factory.mktemp("quickstart")
    mlflow_port, serving_port = free_port(), free_port()
    env = {
        **os.environ,
        **mlflow_env(mlflow_port),
        "AIINFRA_SERVING__PORT": str(serving_port),
        "AIINFRA_GATE__SERVING_CHECK__ENABLED": "true",  # as on the local profile
        "TERM": "xterm",
    }
    code, raw = run_in_terminal(
        [*CLI, "quickstart", "--config", str(SMOKE), "--home", str(home)], env, timeout=900
    )
    try:
        yield code, raw, home
    finally:
        subprocess.run([*CLI, "down", "--config", str(SMOKE), "--home", str(home)], env=env)


def test_quickstart_fits_a_screen_and_ends_with_its_results(
    quickstart: tuple[int, str, Path],
) -> None:
    code, raw, home = quickstart
    shown = screen(raw)
    print("\n".join(shown))  # the screen, for the record (pytest -s)
    assert code == 0, "\n".join(shown)
    text = "\n".join(shown)
    assert len(shown) <= 30, text
    for task in ("build-training-set", "validate-data", "train-model", "register-model"):
        assert any(line.split()[:2] == ["ok", task] for line in shown), text
    assert "passed: " in text and "checks on 1500 rows" in text  # validation's result
    assert re.search(r"^version +1$", text, re.M) and "none -> 1 (promoted)" in text, text
    assert re.search(r"^server check passed: answered \d+ rows as evaluated", text, re.M), text
    for word in ("Warning", "warning", "Traceback", "INFO", "Skipping"):
        assert word not in text, f"{word!r} on screen:\n{text}"
    assert "\x1b[" in raw  # a terminal gets the live indicator and colours

    # Every path and URL it names is real: the reports, the log, the MLflow run, the service.
    # "label        value" lines: a 12-character label, a space, the value
    named = {line[:13].strip(): line[13:].strip() for line in shown if not line.startswith(" ")}
    report = Path(named["validation"])
    assert report.suffix == ".html" and "<html" in report.read_text().lower()
    gate_report = Path(named["gate report"])
    assert gate_report.suffix == ".md" and gate_report.read_text().strip()
    log = Path(named["log"])
    assert log.is_relative_to(home) and "Executing task 'train-model'" in log.read_text()
    assert httpx.get(named["MLflow run"].split("#")[0], timeout=10).status_code == 200
    body = json.loads(re.search(r"-d '(\{.*\})'", named["try"])[1])  # type: ignore[index]
    url = named["try"].split()[-1]
    answer = httpx.post(url, json=body, timeout=10).json()
    printed = json.loads(named["answer"])
    assert answer.pop("request_id") != printed.pop("request_id")  # each answer has its own id
    assert answer == printed
