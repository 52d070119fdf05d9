"""`aiinfra retrain --if-drifted` against a real MLflow server: the champion's reference
profile (what register_model records at ``registry.REFERENCE_PROFILE``) comes back from the
registry, and the CLI compares the service's request log with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aiinfra.data import drift
from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.prediction_log import PredictionLog
from examples.loan_default.data import DemoData
from tests.conftest import SMOKE

MODEL = "drift-model"


@pytest.fixture(scope="module")
def reference(training_frame: pd.DataFrame, schema: Schema) -> dict[str, Any]:
    return drift.build_profile(training_frame, schema)


def _register(uri: str, name: str, artifacts: dict[str, str]) -> str:
    """A version of ``name`` as @champion, its run holding ``artifacts`` (path: text)."""
    client = registry.client(uri)
    experiment = client.create_experiment(f"drift-tests-{name}")
    run_id = client.create_run(experiment).info.run_id
    for path, text in artifacts.items():
        client.log_text(run_id, text, path)
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(name, registry.CHAMPION, version)
    return str(version)


@pytest.fixture(scope="module")
def champion(mlflow_server: PlatformConfig, reference: dict[str, Any]) -> str:
    """A version whose run carries the reference profile, as register_model leaves it."""
    uri = mlflow_server.mlflow.tracking_uri
    return _register(uri, MODEL, {registry.REFERENCE_PROFILE: json.dumps(reference)})


def test_the_reference_profile_comes_back_from_the_registry(
    mlflow_server: PlatformConfig,
    training_frame: pd.DataFrame,
    schema: Schema,
    reference: dict[str, Any],
    champion: str,
) -> None:
    uri = mlflow_server.mlflow.tracking_uri
    found = registry.champion_reference(uri, MODEL)
    assert found is not None
    version, profile = found
    assert version == champion and profile == json.loads(json.dumps(reference))
    assert profile["rows"] == len(training_frame)
    assert set(profile["features"]) == set(schema.feature_names)
    assert registry.champion_reference(uri, "none") is None  # no such model
    legacy = _register(uri, "drift-legacy", {})  # registered before drift references
    assert registry.alias_version(uri, "drift-legacy", registry.CHAMPION) == legacy
    assert registry.champion_reference(uri, "drift-legacy") is None


def _log_requests(home: Path, rows: pd.DataFrame, schema: Schema, demo: DemoData) -> None:
    """The service's request log in ``home``: each row as sent and the features the model
    was given (stored and request-time), and the project's tables there."""
    demo.write(home / "data")
    log = PredictionLog(home / "serving" / "predictions", sample_rate=1.0)
    plain = rows[[*schema.entity_names, *(f.name for f in schema.request_features)]]
    records = plain.to_dict("records")
    answer = {"probability": 0.1, "predicted_class": schema.classes[0]}
    response = {"model_name": MODEL, "model_version": "1", "predictions": [answer] * len(records)}
    features = rows[list(schema.feature_names)].reset_index(drop=True)
    assert log.record(records, response, features)
    log.flush()  # written by the log's background thread
    (path,) = (home / "serving" / "predictions").glob("predictions-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(records)
    assert lines[0]["model_version"] == "1" and lines[0]["answer"] == answer
    assert set(lines[0]["request"]) == set(plain.columns)
    assert set(lines[0]["features"]) == set(schema.feature_names)


def _retrain(mlflow_server: PlatformConfig, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIINFRA_MLFLOW__TRACKING_URI": mlflow_server.mlflow.tracking_uri,
        "AIINFRA_MLFLOW__MODEL_NAME": MODEL,
    }
    command = [sys.executable, "-m", "aiinfra_cli.main", "--config", str(SMOKE)]
    command += ["--home", str(home), "retrain", "--if-drifted", "--dry-run"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cli_retrains_only_when_requests_drifted(
    mlflow_server: PlatformConfig,
    training_frame: pd.DataFrame,
    schema: Schema,
    demo: DemoData,
    champion: str,
    tmp_path: Path,
) -> None:
    # All of the schema's features are compared: the log's "features" hold the stored ones.
    # A run needs monitoring.rules.drifted_features drifted features (2 by default).
    count = len(schema.feature_names)
    same = tmp_path / "same"
    _log_requests(same, training_frame.sample(400, random_state=1), schema, demo)
    quiet = _retrain(mlflow_server, same)
    assert quiet.returncode == 0, quiet.stderr
    assert f"no retraining: drift in 0 of {count} features, 2 needed" in quiet.stdout
    assert "would start" not in quiet.stdout

    bigger = training_frame.sample(400, random_state=2)
    bigger["loan_amount"] = (bigger["loan_amount"] * 2.5).clip(upper=100_000)
    one = tmp_path / "one-shifted"
    _log_requests(one, bigger, schema, demo)
    alone = _retrain(mlflow_server, one)
    assert alone.returncode == 0, alone.stderr
    assert f"no retraining: drift in 1 of {count} features, 2 needed" in alone.stdout
    assert "loan_amount" in alone.stdout and "would start" not in alone.stdout

    two = tmp_path / "two-shifted"
    _log_requests(two, bigger.assign(purpose="car"), schema, demo)
    drifted = _retrain(mlflow_server, two)
    assert drifted.returncode == 0, drifted.stderr
    (line,) = [x for x in drifted.stdout.splitlines() if x.startswith("retraining:")]
    assert line.startswith(f"retraining: drift in 2 of {count} features: ")
    assert "loan_amount (PSI" in line and "purpose (PSI" in line
    assert "dry run: would start a run locally" in drifted.stdout

    empty = tmp_path / "no-requests"
    demo.write(empty / "data")
    nothing = _retrain(mlflow_server, empty)
    assert nothing.returncode == 0, nothing.stderr
    assert "no retraining: only 0 recent rows" in nothing.stdout
