"""`aiinfra retrain --if-drifted` against a real MLflow server: the champion's reference sample
goes to the registry and comes back, and the CLI compares the service's request log with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aiinfra.monitoring import retraining
from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.prediction_log import PredictionLog
from examples.loan_default.data import DemoData
from tests.conftest import SMOKE

MODEL = "drift-model"


@pytest.fixture(scope="module")
def champion(mlflow_server: PlatformConfig, training_frame: pd.DataFrame, schema: Schema) -> str:
    """A version whose run carries the reference sample, as register_model leaves it."""
    uri = mlflow_server.mlflow.tracking_uri
    client = registry.client(uri)
    experiment = client.create_experiment("drift-tests")
    run_id = client.create_run(experiment).info.run_id
    retraining.log_reference(client, run_id, training_frame, schema)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(MODEL, registry.CHAMPION, version)
    return str(version)


def test_the_reference_sample_comes_back_from_the_registry(
    mlflow_server: PlatformConfig,
    training_frame: pd.DataFrame,
    schema: Schema,
    champion: str,
    tmp_path: Path,
) -> None:
    version, reference = retraining.champion_reference(
        mlflow_server.mlflow.tracking_uri, MODEL, tmp_path
    )
    assert version == champion and reference is not None
    assert list(reference.columns) == [schema.timestamp, *schema.feature_names]
    assert len(reference) == len(training_frame)  # smoke size: under the sample cap
    missing = retraining.champion_reference(mlflow_server.mlflow.tracking_uri, "none", tmp_path)
    assert missing == (None, None)


def _log_requests(home: Path, rows: pd.DataFrame, schema: Schema, demo: DemoData) -> None:
    """The service's request log in ``home``, and the project's tables there (its schema is
    read from the label table and the Feast repo)."""
    demo.write(home / "data")
    log = PredictionLog(home / "serving" / "predictions", sample_rate=1.0)
    plain = rows[[*schema.entity_names, *(f.name for f in schema.request_features)]]
    records = plain.to_dict("records")
    answer = {"probability": 0.1, "predicted_class": schema.classes[0]}
    response = {"model_name": MODEL, "model_version": "1", "predictions": [answer] * len(records)}
    assert log.record(records, response)
    log.flush()  # written by the log's background thread
    (path,) = (home / "serving" / "predictions").glob("predictions-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(records)
    assert lines[0]["model_version"] == "1" and lines[0]["answer"] == answer
    assert set(lines[0]["request"]) == set(plain.columns)


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
    same = tmp_path / "same"
    _log_requests(same, training_frame.sample(400, random_state=1), schema, demo)
    quiet = _retrain(mlflow_server, same)
    assert quiet.returncode == 0, quiet.stderr
    assert "no retraining: no drift in 3 features" in quiet.stdout
    assert "would start" not in quiet.stdout

    shifted = tmp_path / "shifted"
    bigger = training_frame.sample(400, random_state=2)
    bigger["loan_amount"] = (bigger["loan_amount"] * 2.5).clip(upper=100_000)
    _log_requests(shifted, bigger, schema, demo)
    drifted = _retrain(mlflow_server, shifted)
    assert drifted.returncode == 0, drifted.stderr
    assert "retraining: drift in 1 of 3 features: loan_amount" in drifted.stdout
    assert "dry run: would start a run locally" in drifted.stdout

    empty = tmp_path / "no-requests"
    demo.write(empty / "data")
    nothing = _retrain(mlflow_server, empty)
    assert "no retraining: only 0 recent rows" in nothing.stdout
