"""Nothing depends on names: a table whose every column has a random name becomes a working
project through ``aiinfra init`` (run as a user runs it), and the whole platform runs on it:
Feast, validation, training, the gate, the registry, serving. One pipeline run (CI budget)."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from aiinfra.release import registry
from aiinfra_cli.workflow import TrainingOutcome, run_training, start_serving, wait_for_version
from tests.conftest import profile_config
from tests.e2e.conftest import running_platform

pytestmark = pytest.mark.e2e

ROWS = 400
# Every column name of the loan example: none of them may reach the model of this project.
LOAN_COLUMNS = (
    "loan", "applicant", "zipcode", "defaulted", "event_timestamp", "purpose", "term_months",
    "home_ownership", "credit_score", "annual_income", "debt_to_income", "employment_years",
    "open_credit_lines", "median_income", "unemployment_rate", "regional_default_rate", "age",
    "loan_id", "applicant_id", "loan_amount", "loan_default_v1",
)  # fmt: skip


def _random_table(seed: int = 20240917) -> tuple[pd.DataFrame, dict[str, Any]]:
    """~400 rows: an integer entity key, a timestamp over the last 30 days, 8 numeric and 2
    categorical columns, one more numeric column sent with each request, and a binary label
    that depends on a few of them. Every name is 8 random letters."""
    rng = np.random.default_rng(seed)
    names: list[str] = []
    while len(names) < 14:
        name = "".join(rng.choice(list(string.ascii_lowercase), 8))
        if name not in names and not any(loan in name for loan in LOAN_COLUMNS):
            names.append(name)
    key, ts, label, request, *rest = names
    numeric, categorical = rest[:8], rest[8:]
    now = datetime.now(UTC)
    ages = np.sort(rng.uniform(5 / (24 * 60), 29.5, ROWS))[::-1]  # days before now
    table: dict[str, Any] = {
        key: rng.choice(1_000_000, ROWS, replace=False) + 1,
        ts: [(now - timedelta(days=float(d))).isoformat() for d in ages],
    }
    for i, column in enumerate(numeric):
        values = rng.normal(10 * i, 1 + i, ROWS)
        table[column] = np.round(values).astype(int) if i % 3 == 2 else values
    levels = [
        ["".join(rng.choice(list(string.ascii_lowercase), 5)) for _ in range(3)] for _ in "ab"
    ]
    for column, choices in zip(categorical, levels, strict=True):
        table[column] = rng.choice(choices, ROWS)
    table[request] = rng.uniform(0, 1, ROWS)
    frame = pd.DataFrame(table)
    logit = (
        1.8 * (frame[numeric[0]] - frame[numeric[0]].mean())
        - 0.6 * (frame[numeric[1]] - frame[numeric[1]].mean())
        + 1.5 * (frame[categorical[0]] == levels[0][0])
        + 2.0 * (frame[request] - 0.5)
        - 0.5
    )
    frame[label] = (rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(int)
    roles = {"key": key, "ts": ts, "label": label, "request": request, "numeric": numeric}
    return frame, {**roles, "categorical": categorical}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("random")
    frame, roles = _random_table()
    frame.to_csv(root / "table.csv", index=False)
    directory = root / "project"
    command = [
        sys.executable, "-m", "aiinfra_cli.main", "init", str(directory),
        "--data", str(root / "table.csv"), "--entity", roles["key"], "--timestamp", roles["ts"],
        "--label", roles["label"], "--request-feature", roles["request"],
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "task:     binary" in result.stdout
    for column in (*roles["numeric"], *roles["categorical"]):
        assert f"  {column}: " in result.stdout
    return directory, {**roles, "frame": frame}


@pytest.fixture(scope="module")
def platform(project: tuple[Path, dict[str, Any]]) -> Iterator[PlatformConfig]:
    directory, _ = project
    config = profile_config(directory / "profile.yaml", directory / ".aiinfra")
    yield from running_platform(config)


@pytest.fixture(scope="module")
def outcome(platform: PlatformConfig) -> TrainingOutcome:
    return run_training(platform, commit="0123456789ab")


def test_the_random_project_trains_registers_and_is_promoted(
    platform: PlatformConfig, outcome: TrainingOutcome
) -> None:
    uri, name = platform.mlflow.tracking_uri, platform.model_name
    assert name == "project"  # from the folder: nothing of the loan example
    assert outcome.version == "1" and outcome.gate == "passed", outcome.gate_reason
    assert outcome.promoted
    assert registry.alias_version(uri, name, registry.CHAMPION) == "1"
    tags = registry.version_tags(uri, name, "1")
    assert tags["validation"] == "passed" and tags["feature_service"] == "project_v1"


def test_the_service_answers_for_a_random_entity_key(
    platform: PlatformConfig,
    outcome: TrainingOutcome,
    project: tuple[Path, dict[str, Any]],
    tmp_path: Path,
) -> None:
    _, roles = project
    frame = roles["frame"]
    row = {
        roles["key"]: int(frame[roles["key"]].iloc[-1]),
        roles["request"]: float(frame[roles["request"]].iloc[-1]),
    }
    base_url = start_serving(platform)
    answer = wait_for_version(base_url, {"rows": [row]}, outcome.version, timeout=120)
    response = httpx.post(f"{base_url}/predict", json={"rows": [row]}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.pop("request_id") != answer.pop("request_id")  # each answer has its own id
    assert body == answer and body["model_version"] == outcome.version
    (prediction,) = body["predictions"]
    assert 0 < prediction["probability"] < 1 and prediction["predicted_class"] in (0, 1)
    assert prediction["predicted_class"] == int(prediction["probability"] >= 0.5)

    # The saved model describes this project only: its random names, no loan column.
    registry.load_version(platform.mlflow.tracking_uri, platform.model_name, "1", tmp_path)
    (spec,) = tmp_path.rglob("model.json")
    words = set(_strings(json.loads(spec.read_text())))
    ours = {roles["key"], roles["ts"], roles["label"], roles["request"]}
    assert ours | {*roles["numeric"], *roles["categorical"]} <= words
    assert not words & set(LOAN_COLUMNS), words & set(LOAN_COLUMNS)
    assert not [w for w in words if "loan" in w.lower()]


def _strings(value: Any) -> Iterator[str]:
    """Every key and string value in a JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
