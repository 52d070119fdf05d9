"""A trace for every prediction, through a real BentoML server: every answer carries a request
id (the caller's when it is sane), and ``aiinfra trace ID`` resolves a served request to its
model version, the version's lineage and data hash, the stored features the online store gave,
and whether the training set still hashes as recorded."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pandas as pd
import pytest

from aiinfra.data.training_set import read_training_set, write_training_set
from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.release.metrics import frame_hash
from aiinfra.runtime.api import OnlineFeatures
from aiinfra.runtime.prediction_log import PredictionLog, day_file, find_request
from aiinfra.training.model import TabularModel
from aiinfra_cli.trace_command import training_set_artifact
from examples.loan_default.data import DemoData
from tests.conftest import mlflow_env, run_cli
from tests.serving.conftest import LOAN_ROW, register, serving, serving_home

MODEL = "trace-model"
PIPELINE_RUN = "loan-default-training-2026-01-02-03-04-05-000006"
ROW = LOAN_ROW
UUID_HEX = re.compile(r"[0-9a-f]{32}")
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Served:
    config: PlatformConfig
    url: str
    version: str
    data_hash: str
    artifact: Path


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: PlatformConfig,
    demo: DemoData,
    training_frame: pd.DataFrame,
    schema: Schema,
    model: TabularModel,
) -> Iterator[Served]:
    """A champion registered as a local pipeline run registers one: its training set left
    where kfp.local leaves it, its data hash computed as ``steps.register_model`` does (of
    that file, read back)."""
    config = serving_home(tmp_path_factory.mktemp("trace-home"), mlflow_server, demo, MODEL)
    artifact = training_set_artifact(config.pipeline_root, PIPELINE_RUN)
    assert artifact is not None
    write_training_set(training_frame, schema, artifact)
    data_hash = frame_hash(read_training_set(artifact)[0])
    version = register(
        config,
        training_frame,
        model,
        pipeline_run=PIPELINE_RUN,
        data_hash=data_hash,
        git_commit="0123abc",
        feature_service=schema.feature_service,
    )
    registry.promote(config.mlflow.tracking_uri, MODEL, version)
    with serving(config) as url:
        yield Served(config, url, version, data_hash, artifact)


def _post(served: Served, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{served.url}{path}", content=json.dumps(body), headers={**JSON, **headers}, timeout=30
    )


def _trace(served: Served, request_id: str) -> tuple[int, str, str, float]:
    """``aiinfra trace`` as a person runs it: exit code, stdout, stderr, seconds."""
    started = time.perf_counter()
    done = run_cli(
        served.config.home,
        "trace",
        request_id,
        env=mlflow_env(served.config.mlflow.port),
    )
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def _logged(served: Served, request_id: str) -> list[dict[str, Any]]:
    """The request's lines, once the service's writer thread has written them."""
    deadline = time.monotonic() + 20
    while True:
        rows: list[dict[str, Any]] = find_request(served.config.prediction_log_dir, request_id)
        if rows:
            return rows
        assert time.monotonic() < deadline, f"{request_id} never reached the prediction log"
        time.sleep(0.1)


def test_predict_answers_with_its_request_id_in_header_and_body(served: Served) -> None:
    response = _post(served, "/predict", {"rows": [ROW]})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert UUID_HEX.fullmatch(request_id)
    assert response.json()["request_id"] == request_id
    # Each answer its own id.
    assert _post(served, "/predict", {"rows": [ROW]}).headers["x-request-id"] != request_id


def test_the_answer_matches_its_declared_type(served: Served) -> None:
    document = httpx.get(f"{served.url}/docs.json", timeout=30).json()
    response = _post(served, "/predict", {"rows": [ROW]})
    declared = document["paths"]["/predict"]["post"]["responses"]["200"]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})
    if "$ref" in schema:  # BentoML declares the type inline or as a component
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert "request_id" in schema["properties"]
    assert "X-Request-ID" in declared["headers"]


def test_a_sane_incoming_id_is_echoed(served: Served) -> None:
    offered = "client-42.retry_1"
    response = _post(served, "/predict", {"rows": [ROW]}, **{"X-Request-ID": offered})
    assert response.headers["x-request-id"] == offered
    assert response.json()["request_id"] == offered


@pytest.mark.parametrize("offered", ["has space", "x" * 65, "semi;colon", "ünïcode"])
def test_an_insane_incoming_id_is_replaced(served: Served, offered: str) -> None:
    response = httpx.post(
        f"{served.url}/predict",
        content=json.dumps({"rows": [ROW]}),
        headers=[(b"content-type", b"application/json"), (b"x-request-id", offered.encode())],
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert UUID_HEX.fullmatch(response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_errors_carry_the_id_too(served: Served) -> None:
    unknown = _post(
        served,
        "/predict",
        {"rows": [{**ROW, "applicant_id": 987654}]},
        **{"X-Request-ID": "lost-applicant"},
    )
    assert unknown.status_code == 404 and unknown.headers["x-request-id"] == "lost-applicant"
    assert set(unknown.json()) == {"error"}  # the declared Error object, nothing added
    refused = httpx.post(
        f"{served.url}/predict", content=b"rows", headers={"content-type": "text/plain"}
    )
    assert refused.status_code == 415 and UUID_HEX.fullmatch(refused.headers["x-request-id"])
    assert UUID_HEX.fullmatch(httpx.get(f"{served.url}/nowhere").headers["x-request-id"])


def test_predict_batch_answers_carry_the_id(served: Served) -> None:
    response = _post(served, "/predict_batch", {"rows": [ROW]}, **{"X-Request-ID": "batch-1"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "batch-1"
    assert UUID_HEX.fullmatch(
        _post(served, "/predict_batch", {"rows": [ROW]}).headers["x-request-id"]
    )


def test_trace_resolves_a_served_request_to_its_version_data_and_stored_features(
    served: Served, schema: Schema, demo: DemoData
) -> None:
    other = {**ROW, "applicant_id": int(demo.applicants["applicant_id"].iloc[1])}
    rows = [ROW, other]
    response = _post(served, "/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    answer = response.json()
    request_id = answer["request_id"]

    # What the log kept is what the online store holds for these entities, row by row.
    held = OnlineFeatures(served.config, schema).frame(rows).to_dict("records")
    logged = _logged(served, request_id)
    assert [e["row"] for e in logged] == [0, 1]
    assert [e["request"] for e in logged] == rows
    assert [e["features"] for e in logged] == held
    assert [e["answer"] for e in logged] == answer["predictions"]

    code, out, err, seconds = _trace(served, request_id)
    assert code == 0, err
    assert out.startswith(f"request {request_id} at ")
    for label, value in (
        ("model", f"{MODEL} version {served.version}"),
        ("pipeline run", PIPELINE_RUN),
        ("git commit", "0123abc"),
        ("data hash", served.data_hash),
        ("feature service", schema.feature_service),
        ("training data", f"hash matches the recorded artifact ({served.artifact})"),
    ):
        assert re.search(rf"^  {label} +{re.escape(value)}$", out, re.M), (label, out)
    stored = [f.name for f in schema.stored_features]
    assert stored
    for position, row in enumerate(held):
        section = out.split(f"row {position}\n", 1)[1]
        shown = set(section.split("prediction", 1)[0].split())
        for name in stored:
            assert f"{name}={json.dumps(row[name])}" in shown, (name, section)
        prediction = answer["predictions"][position]["probability"]
        assert f"probability={json.dumps(prediction)}" in section
    print(f"trace took {seconds:.2f} s")


def test_trace_reports_a_changed_or_missing_training_set(served: Served) -> None:
    request_id = _post(served, "/predict", {"rows": [ROW]}).json()["request_id"]
    _logged(served, request_id)
    kept = served.artifact.with_name("kept")
    shutil.copy(served.artifact, kept)
    try:
        frame, schema = read_training_set(kept)
        changed = frame.copy()
        column = changed.select_dtypes("number").columns[0]
        changed.loc[0, column] = changed.loc[0, column] + 1
        write_training_set(changed, schema, served.artifact)
        code, out, err, _ = _trace(served, request_id)
        assert code == 0, err
        assert f"hash does not match the recorded artifact: recorded {served.data_hash}" in out
        served.artifact.unlink()
        code, out, err, _ = _trace(served, request_id)
        assert code == 0, err
        assert f"training data    artifact not found here ({served.artifact})" in out
    finally:
        shutil.copy(kept, served.artifact)


def test_an_unknown_id_fails_in_one_line_naming_the_sampling(served: Served) -> None:
    code, out, err, _ = _trace(served, "never-answered")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "never-answered not found" in err and "log_sample_rate = 1" in err
    code, _, err, _ = _trace(served, "../etc")
    assert code == 1 and "not a request id" in err


# The log's side of a trace, without a server.


def test_the_newest_request_with_an_id_is_found_newest_file_first(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, sample_rate=1.0)
    frame = pd.DataFrame({"income": [1.0, 2.0], "amount": [10, 20]})
    answer = {"model_name": "m", "model_version": "2", "predictions": [{"value": 1}, {"value": 2}]}
    rows = [{"id": 1, "amount": 10}, {"id": 2, "amount": 20}]
    log.record(rows, answer, frame, "retried")
    log.record(rows[:1], {**answer, "predictions": [{"value": 9}]}, frame.iloc[:1], "retried")
    log.record(rows, answer, frame, "other")
    log.flush()
    (found,) = find_request(tmp_path, "retried")  # the retry: one row, not the first request's
    assert found["answer"] == {"value": 9} and found["features"] == {"income": 1.0, "amount": 10}
    both = find_request(tmp_path, "other")
    assert [e["row"] for e in both] == [0, 1] and both[1]["features"]["amount"] == 20
    # An older day's file is read only when the newer ones lack the id; torn and pre-trace
    # lines are skipped; readers of the log's first keys still find them.
    older = day_file(tmp_path, datetime.now(UTC) - timedelta(days=1))
    older.write_text(
        json.dumps({"at": "2026-01-01T00:00:00+00:00", "request_id": "old", "row": 0})
        + '\n{"request_id": "old", "tor\n'
        + json.dumps({"at": "2026-01-01T00:00:00+00:00", "request": {}, "answer": {}})
        + "\n"
    )
    assert [e["at"] for e in find_request(tmp_path, "old")] == ["2026-01-01T00:00:00+00:00"]
    assert find_request(tmp_path, "never") == []
    assert {"at", "model_version", "request", "answer"} <= set(both[0])
