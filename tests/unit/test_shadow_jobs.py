"""The shadow process's side of the boundary: a job crosses it as JSON bytes and comes back
with the same model input; a shadow process that dies costs skipped jobs, never an error, and
is started again."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiinfra.project.schema import Feature, Key, Schema
from aiinfra.runtime import shadow as shadow_module
from aiinfra.runtime.shadow import Shadow
from aiinfra.runtime.shadow_worker import Job, decode_job, encode_job
from tests.conftest import smoke_config


def _features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "zipcode": ["10001", None, "94105"],  # categorical strings, one missing
            "employment": pd.Series(["salaried", "self", "salaried"], dtype="category"),
            "age": [34, 51, 27],
            "children": pd.Series([0, 2, 1], dtype="int32"),
            "income": [52_000.5, float("nan"), 31_000.0],
            "ratio": pd.Series([0.25, 0.5, float("nan")], dtype="float32"),
            "owns_home": [True, False, True],
        }
    )


def test_a_job_crosses_as_json_bytes_and_keeps_the_model_input() -> None:
    job = Job(
        request_id="req-1",
        model_name="loan-default",
        champion_version="3",
        champion_answers=[{"probability": 0.25, "predicted_class": 0}] * 3,
        champion_ms=1.234,
        rows=[{"applicant_id": i, "loan_amount": 5000.0 + i} for i in range(3)],
        features=_features(),
    )
    encoded = encode_job(job)
    message = json.loads(encoded)  # plain JSON: nothing is unpickled on the other side
    assert isinstance(encoded, bytes) and message["kind"] == "job"
    decoded = decode_job(message)
    pd.testing.assert_frame_equal(decoded.features, job.features)
    assert list(decoded.features.columns) == list(job.features.columns)
    assert math.isnan(decoded.features["income"][1]) and decoded.features["zipcode"][1] is None
    assert decoded.features["employment"].dtype == "category"
    assert decoded.features["children"].dtype == np.int32
    assert (decoded.request_id, decoded.model_name, decoded.champion_version) == (
        "req-1",
        "loan-default",
        "3",
    )
    assert decoded.champion_answers == job.champion_answers
    assert decoded.champion_ms == job.champion_ms and decoded.rows == job.rows


def _schema() -> Schema:
    return Schema(
        task="binary",
        entities=(Key("applicant_id", "int"),),
        timestamp="event_timestamp",
        label="default",
        features=(Feature("loan_amount", "numeric", "request", min_value=0.0),),
        classes=(0, 1),
    )


def _job() -> Job:
    frame = pd.DataFrame({"loan_amount": [5000.0]})
    answer = [{"probability": 0.5, "predicted_class": 1}]
    return Job("req", "m", "1", answer, 1.0, [{"applicant_id": 1, "loan_amount": 5000.0}], frame)


def test_a_dead_shadow_process_skips_jobs_and_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No registry answers here: the process never loads a challenger, which is all this needs.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # inherited: no retry noise
    shadow = Shadow(smoke_config(tmp_path, poll_seconds=600), _schema())
    first = shadow.pid
    assert first is not None and first != os.getpid()
    assert shadow.send(_job().features, _job().rows, _response(), 1.0, "req")
    shadow.flush()  # acknowledged by the process once it runs: it reads the pipe
    assert shadow.skipped == 0 and shadow.pid == first

    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while shadow.skipped == 0:  # a job sent while it was dying is lost with it, uncounted
        assert time.monotonic() < deadline, "jobs for a dead process were not skipped"
        assert shadow.send(_job().features, _job().rows, _response(), 1.0, "req")  # no raise
        shadow.flush()
    assert shadow.skipped == 1 and shadow.pid is None  # too soon to restart it

    monkeypatch.setattr(shadow_module, "RESTART_SECONDS", 0.0)
    shadow.send(_job().features, _job().rows, _response(), 1.0, "req")
    shadow.flush()
    assert shadow.skipped == 1 and shadow.pid not in (None, first)


def _response() -> dict[str, object]:
    return {
        "model_name": "m",
        "model_version": "1",
        "predictions": [{"probability": 0.5, "predicted_class": 1}],
    }
