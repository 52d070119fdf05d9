"""What monitoring reads from a real BentoML server: every prediction request's outcome
(answered, refused by validation, by the guard, or for an unknown entity) with the status,
latency and request id the client got, and the monitoring job's latest window as gauges on
``/metrics``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiinfra.project.config import PlatformConfig
from aiinfra.runtime.monitoring_gauges import REPORT_NAME
from aiinfra.runtime.request_outcomes import read_outcomes
from aiinfra.training.model import TabularModel
from examples.loan_default.data import DemoData
from tests.serving.conftest import LOAN_ROW, served_champion

MODEL = "outcomes-model"
ROW = LOAN_ROW
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: PlatformConfig,
    demo: DemoData,
    training_frame: pd.DataFrame,
    model: TabularModel,
) -> Iterator[tuple[PlatformConfig, str]]:
    home = tmp_path_factory.mktemp("outcomes-home")
    with served_champion(home, mlflow_server, demo, MODEL, training_frame, model) as found:
        yield found


def _timed_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    return response, (time.perf_counter() - started) * 1000


def _outcomes(config: PlatformConfig, since: datetime, count: int) -> list[dict[str, Any]]:
    """The first ``count`` outcomes since ``since``, once the writer thread wrote them."""
    deadline = time.monotonic() + 20
    while True:
        lines = list(read_outcomes(config.prediction_log_dir, since))
        if len(lines) >= count:
            return lines[:count]
        assert time.monotonic() < deadline, f"only {len(lines)} outcomes recorded: {lines}"
        time.sleep(0.1)


def _gauges(url: str, names: set[str]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of ``/metrics`` named ``names``, once every one of them is there."""
    deadline = time.monotonic() + 20
    while True:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name in names
        }
        if {name for name, _ in samples} == names:
            return samples
        assert time.monotonic() < deadline, f"/metrics never showed {names}: {samples}"
        time.sleep(0.2)


def test_every_request_outcome_is_recorded_and_the_latest_window_is_on_metrics(
    served: tuple[PlatformConfig, str],
) -> None:
    config, url = served
    since = datetime.now(UTC) - timedelta(seconds=1)
    good = json.dumps({"rows": [ROW]}).encode()
    sent = [
        _timed_post(f"{url}/predict", good, JSON),
        _timed_post(f"{url}/predict", b'{"rows": [{"applicant_id": 17}]}', JSON),
        _timed_post(
            f"{url}/predict", json.dumps({"rows": [{**ROW, "applicant_id": 987654}]}).encode(), JSON
        ),
        _timed_post(f"{url}/predict_batch", good, {"content-type": "text/plain"}),
    ]
    assert [r.status_code for r, _ in sent] == [200, 400, 404, 415]
    lines = _outcomes(config, since, len(sent))
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/predict", 200),
        ("/predict", 400),  # the body failed validation, in BentoML
        ("/predict", 404),  # the endpoint's answer
        ("/predict_batch", 415),  # refused by the guard before BentoML
    ]
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r, _ in sent]
    for line, (_, client_ms) in zip(lines, sent, strict=True):
        assert 0 < line["latency_ms"] < client_ms  # the server's share of the round trip

    latest: dict[str, Any] = {
        "model_name": MODEL,
        "model_version": "1",
        "window_start": "2026-01-02T03:00:00+00:00",
        "window_end": "2026-01-02T04:00:00+00:00",
        "rows": 57,
        "requests": 60,
        "errors": 3,
        "error_rate": 0.05,
        "latency_p50_ms": 4.0,
        "latency_p95_ms": 18.5,
        "drifted_features": 1,
        "features": {"loan_amount": {"psi": 0.42, "drifted": True}},
        "prediction_psi": 0.07,
        "labelled_rows": 20,
        "live": {"roc_auc": 0.66},
        "rules_fired": [],
    }
    config.monitoring_dir.mkdir(parents=True, exist_ok=True)
    (config.monitoring_dir / REPORT_NAME).write_text(json.dumps(latest))
    model = ("model_name", MODEL)
    expected = {
        ("aiinfra_monitoring_window_rows", frozenset({model})): 57,
        ("aiinfra_monitoring_error_rate", frozenset({model})): 0.05,
        ("aiinfra_monitoring_latency_p95_ms", frozenset({model})): 18.5,
        ("aiinfra_monitoring_drifted_features", frozenset({model})): 1,
        ("aiinfra_monitoring_feature_psi", frozenset({model, ("feature", "loan_amount")})): 0.42,
        ("aiinfra_monitoring_prediction_psi", frozenset({model})): 0.07,
        ("aiinfra_monitoring_live_metric", frozenset({model, ("metric", "roc_auc")})): 0.66,
        ("aiinfra_monitoring_window_end_seconds", frozenset({model})): datetime.fromisoformat(
            latest["window_end"]
        ).timestamp(),
    }
    assert _gauges(url, {name for name, _ in expected}) == expected
