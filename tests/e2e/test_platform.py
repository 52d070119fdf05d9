"""The whole platform on the local profile, for real: MLflow server, Feast repo, kfp.local
pipeline, BentoML server. Tests run in order and share one platform home."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig
from aiinfra.project.definition import load_project
from aiinfra.release import registry
from aiinfra.runtime.api import OnlineFeatures
from aiinfra_cli.workflow import run_training, sample_request, wait_for_version
from pipelines.local import PipelineFailed
from tests.conftest import mlflow_env, run_cli
from tests.e2e.load import Load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(loan_platform: PlatformConfig) -> PlatformConfig:
    return loan_platform


def _request(config: PlatformConfig) -> dict[str, list[dict[str, object]]]:
    return sample_request(config, load_project(config).schema)


def _online(config: PlatformConfig) -> OnlineFeatures:
    return OnlineFeatures(config, load_project(config).schema)


@pytest.fixture(scope="module")
def first_run(loan_first_run):  # type: ignore[no-untyped-def]
    return loan_first_run


@pytest.fixture(scope="module")
def service_url(loan_service_url: str) -> str:
    return loan_service_url


def _versions(config: PlatformConfig) -> list[str]:
    found = registry.client(config.mlflow.tracking_uri).search_model_versions(
        f"name='{config.model_name}'"
    )
    return sorted(v.version for v in found)


def test_first_run_registers_with_lineage_and_becomes_champion(
    platform: PlatformConfig, first_run
) -> None:  # type: ignore[no-untyped-def]
    assert first_run.version == "1" and first_run.promoted
    tags = registry.version_tags(platform.mlflow.tracking_uri, platform.model_name, "1")
    assert tags["git_commit"] == "abc123def456"
    assert tags["pipeline_run"].startswith("loan-default-training-")
    assert len(tags["data_hash"]) == 16 and len(tags["eval_hash"]) == 16
    assert tags["feature_service"] == "loan_default_v1"
    assert tags["validation"] == "passed" and tags["gate"] == "passed"
    assert tags["promoted_by"] == f"pipeline:{tags['pipeline_run']}"
    assert (
        registry.alias_version(platform.mlflow.tracking_uri, platform.model_name, "champion") == "1"
    )
    # The Kubeflow UI artifacts of the run: reports and typed outputs on disk.
    assert (
        "Data validation: passed" in (first_run.run_dir / "validate-data" / "summary").read_text()
    )
    assert (
        "Evaluation gate: PASSED" in (first_run.run_dir / "evaluate-model" / "report").read_text()
    )


def test_service_answers_with_the_champions_prediction(
    platform: PlatformConfig, service_url: str, tmp_path: Path
) -> None:
    body = _request(platform)
    body["rows"].append({**body["rows"][0], "loan_amount": 90_000.0, "term_months": 60})
    answer = wait_for_version(service_url, body, "1", timeout=60)
    served = np.array([p["probability"] for p in answer["predictions"]])
    assert [p["predicted_class"] for p in answer["predictions"]] == [int(v >= 0.5) for v in served]
    # Same version, same online features, computed here: the HTTP answer must match.
    model = registry.load_version(platform.mlflow.tracking_uri, platform.model_name, "1", tmp_path)
    expected = model.predict(_online(platform).frame(body["rows"]))
    np.testing.assert_allclose(served, expected, rtol=1e-5)
    assert served[1] > served[0]  # a much bigger, longer loan is riskier
    metrics = httpx.get(f"{service_url}/metrics").text
    assert re.search(
        r'aiinfra_serving_model_version\{model_name="loan-default"[^}]*\} 1\.0', metrics
    )
    assert httpx.get(f"{service_url}/readyz").status_code == 200


def test_batched_endpoint_answers_each_row_even_with_an_unknown_entity(
    platform: PlatformConfig, service_url: str
) -> None:
    good = _request(platform)["rows"][0]
    unknown = {**good, "applicant_id": 987654}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda body: httpx.post(f"{service_url}/predict_batch", json=body, timeout=30),
                [{"rows": [good]}] * 12 + [{"rows": [good, unknown]}],
            )
        )
    assert {a.status_code for a in answers} == {200}
    single = answers[0].json()[0]
    assert single["error"] is None and 0 < single["probability"] < 1
    mixed = answers[-1].json()
    assert mixed[0]["probability"] == pytest.approx(single["probability"])
    assert mixed[1]["probability"] is None and "no stored features" in mixed[1]["error"]
    empty = httpx.post(f"{service_url}/predict_batch", json={"rows": []}, timeout=10)
    assert empty.status_code == 400 and "rows" in empty.text


def _row(**change: object) -> dict[str, object]:
    good = {"applicant_id": 1, "zipcode": "10000", "loan_amount": 900, "term_months": 36}
    row = {**good, "purpose": "car", **change}
    return {k: v for k, v in row.items() if v is not None}


BAD_REQUESTS = [
    ({"rows": []}, "rows"),
    ({"rows": [_row(purpose=None)]}, "purpose"),
    ({"rows": [_row(loan_amount="lots")]}, "loan_amount"),
    ({"rows": [_row(loan_amount=1e9)]}, "loan_amount"),
    ({"rows": [_row(purpose="yacht")]}, "purpose"),
    ({"rows": [_row(ssn="1")]}, "ssn"),
    ({"rows": [_row(applicant_id=987654, zipcode="99999")]}, "applicant_id=987654"),
    ({"rows": [_row(applicant_id="one")]}, "applicant_id"),
    ({"rows": "not a list"}, "rows"),
    ({}, "rows"),
]


@pytest.mark.parametrize(("body", "named"), BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_problem(
    service_url: str, body: object, named: str
) -> None:
    response = httpx.post(f"{service_url}/predict", json=body, timeout=10)
    assert 400 <= response.status_code < 500, response.text
    assert named in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (
            b'{"rows": [{"applicant_id": 1, "zipcode": "10000", "loan_amount": NaN,'
            b' "term_months": 36, "purpose": "car"}]}',
            "application/json",
        ),
        (b"{not json", "application/json"),
        (b"\x80\x04\x95\x00", "application/octet-stream"),
        (b"\x80\x04\x95\x00", "application/x-pickle"),
    ],
)
def test_malformed_bodies_get_4xx(service_url: str, content: bytes, content_type: str) -> None:
    response = httpx.post(
        f"{service_url}/predict",
        content=content,
        headers={"content-type": content_type},
        timeout=10,
    )
    assert 400 <= response.status_code < 500, response.text


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(
    ["applicant_id", "zipcode", "loan_amount", "term_months", "purpose", "extra"]
)
_rows = st.lists(st.dictionaries(_field_names, _json, max_size=6), max_size=3)
_bodies = st.one_of(st.fixed_dictionaries({"rows": _rows}), _json)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
def test_fuzzed_requests_never_get_a_5xx(service_url: str, body: object) -> None:
    # Encoded here: NaN and Infinity tokens are what a sloppy client really sends.
    content = json.dumps(body, allow_nan=True)
    for endpoint in ("predict", "predict_batch"):
        response = httpx.post(
            f"{service_url}/{endpoint}",
            content=content,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code < 500, (endpoint, body, response.status_code, response.text)


def test_second_run_that_does_not_win_keeps_the_champion(
    platform: PlatformConfig, service_url: str
) -> None:
    outcome = run_training(platform, commit="abc123def456")
    assert outcome.version == "2" and not outcome.promoted
    tags = registry.version_tags(platform.mlflow.tracking_uri, platform.model_name, "2")
    assert tags["gate"] == "failed" and "does not beat" in tags["gate_reason"]
    assert tags["champion_at_evaluation"] == "1"
    assert (
        registry.alias_version(platform.mlflow.tracking_uri, platform.model_name, "challenger")
        == "2"
    )
    assert (
        registry.alias_version(platform.mlflow.tracking_uri, platform.model_name, "champion") == "1"
    )
    answer = httpx.post(f"{service_url}/predict", json=_request(platform), timeout=10).json()
    assert answer["model_version"] == "1"


def _cli(platform: PlatformConfig, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(platform.home, *args, env={**mlflow_env(platform.mlflow.port), **env})


def test_serve_on_another_port_says_where_the_service_runs_and_keeps_it(
    platform: PlatformConfig, service_url: str
) -> None:
    """The service for this home already runs: a second `serve` on another (here: taken)
    port says where it runs in one line, at once, and stops nothing."""
    service = local_servers.bentoml_service(platform)
    pid = local_servers.running_pid(service)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        done = _cli(platform, "serve", AIINFRA_SERVING__PORT=str(other.getsockname()[1]))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"already runs on port {platform.serving.port} (pid {pid})" in line, line
    assert local_servers.running_pid(service) == pid
    assert httpx.get(f"{service_url}/readyz", timeout=10).status_code == 200


def test_moving_champion_deploys_the_new_version_under_load_without_a_restart(
    platform: PlatformConfig, service_url: str
) -> None:
    refused = _cli(platform, "promote", "2")
    gate_reason = registry.version_tags(platform.mlflow.tracking_uri, platform.model_name, "2")[
        "gate_reason"
    ]
    assert refused.returncode == 1 and f"gate failed: {gate_reason}" in refused.stderr
    pid = local_servers.running_pid(local_servers.bentoml_service(platform))
    with Load(service_url, _request(platform)) as load:
        time.sleep(1)
        done = _cli(platform, "promote", "2", "--force", "--reason", "e2e test")
        assert done.returncode == 0 and "1 -> 2" in done.stdout, done.stderr
        # Well under the 120 s poll: the webhook delivered the move.
        wait_for_version(service_url, _request(platform), "2", timeout=30)
        time.sleep(1)
    assert len(load.statuses) > 20 and set(load.statuses) == {200}, set(load.statuses)
    assert load.versions == {"1", "2"}
    assert local_servers.running_pid(local_servers.bentoml_service(platform)) == pid
    history = _cli(platform, "history")
    assert (
        "promote" in history.stdout and "1 -> 2" in history.stdout and "(forced)" in history.stdout
    )


def test_a_broken_champion_is_never_served_and_the_old_one_stays_up(
    platform: PlatformConfig, service_url: str, tmp_path: Path
) -> None:
    uri, name = platform.mlflow.tracking_uri, platform.model_name
    broken = registry.load_version(uri, name, "2", tmp_path)
    with torch.no_grad():
        for p in broken.network.parameters():
            p.fill_(float("nan"))
    example = _online(platform).frame(_request(platform)["rows"])
    tags = {"validation": "passed", "gate": "passed"}
    c = registry.client(uri)
    bad = registry.log_and_register(c, "e2e", name, broken, example, {}, {}, tags, {}).version
    with Load(service_url, _request(platform)) as load:
        registry.promote(uri, name, bad, actor="e2e", reason="broken on purpose")
        deadline = time.monotonic() + 30
        while "deployment_error" not in registry.version_tags(uri, name, bad):
            assert time.monotonic() < deadline, "the failed deployment was not recorded"
            time.sleep(0.5)
    assert set(load.statuses) == {200} and load.versions == {"2"}
    assert "smoke check" in registry.version_tags(uri, name, bad)["deployment_error"]
    assert httpx.get(f"{service_url}/readyz").status_code == 200
    # Put a good champion back for the tests that follow.
    assert _cli(platform, "rollback", "--reason", "broken model").returncode == 0
    assert registry.alias_version(uri, name, "champion") == "2"


def test_webhook_rejects_unsigned_and_forged_deliveries(service_url: str) -> None:
    body = b'{"entity": "model_version_alias", "action": "created", "data": {}}'
    json_type = {"content-type": "application/json"}
    unsigned = httpx.post(f"{service_url}/hooks/mlflow", content=body, headers=json_type)
    forged = httpx.post(
        f"{service_url}/hooks/mlflow",
        content=body,
        headers={
            **json_type,
            "X-MLflow-Delivery-Id": "x",
            "X-MLflow-Timestamp": str(int(time.time())),
            "X-MLflow-Signature": "v1,Zm9yZ2Vk",
        },
    )
    assert unsigned.status_code == 401 and forged.status_code == 401
    assert "signature" in forged.text


def test_requests_and_predictions_are_logged(platform: PlatformConfig) -> None:
    lines = [
        json.loads(line)
        for path in platform.prediction_log_dir.glob("predictions-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) > 20
    assert {"at", "model_version", "request", "answer"} <= set(lines[-1])
    assert 0 <= lines[-1]["answer"]["probability"] <= 1
    assert lines[-1]["request"]["applicant_id"] == _request(platform)["rows"][0]["applicant_id"]


def test_corrupted_data_stops_the_run_at_validation(platform: PlatformConfig) -> None:
    versions = _versions(platform)
    champion = registry.alias_version(platform.mlflow.tracking_uri, platform.model_name, "champion")
    path = platform.data_dir / "applicants.parquet"
    applicants = pd.read_parquet(path)
    applicants.loc[applicants.sample(frac=0.2, random_state=0).index, "credit_score"] = 2000
    applicants.to_parquet(path, index=False)
    with pytest.raises(PipelineFailed) as failure:
        run_training(platform)
    message = str(failure.value)
    assert (
        "validate-data" in message and "expect_column_values_to_be_between(credit_score)" in message
    )
    assert _versions(platform) == versions  # nothing registered
    assert (
        registry.alias_version(platform.mlflow.tracking_uri, platform.model_name, "champion")
        == champion
    )
    report = Path(message.split("report: ")[1].strip())
    assert "credit_score" in report.read_text() and "2000" in report.read_text()
