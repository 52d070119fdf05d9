"""Shadow traffic and the canary, through real BentoML servers on one home with a champion
(version 1, a small network) and a challenger (version 2, @challenger, a much larger one): a
shadowed challenger never changes a response and its answers reach `aiinfra shadow-report`; a
promotion rule can ask for shadow evidence; a canary that does worse than the champion (here:
slower) stops by itself, with no failed request and the reason recorded on the version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import psutil
import pytest

from aiinfra.monitoring import shadow_report
from aiinfra.project.config import CanaryConfig, PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.api import OnlineFeatures, answers
from aiinfra.runtime.canary import Canary
from aiinfra.runtime.champion import Served
from aiinfra.runtime.prediction_log import read_entries
from aiinfra.training import train
from aiinfra.training.model import TabularModel
from aiinfra_cli.workflow import sample_request
from examples.loan_default.data import DemoData
from tests.conftest import free_port, mlflow_env, run_cli
from tests.serving.conftest import FAST, SMALL, register, serving, serving_home

MODEL = "shadow-model"


@dataclass(frozen=True)
class Home:
    config: PlatformConfig
    champion: TabularModel
    rows: list[dict[str, object]]


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: PlatformConfig,
    demo: DemoData,
    training_frame: pd.DataFrame,
    schema: Schema,
    model: TabularModel,
) -> Home:
    config = serving_home(tmp_path_factory.mktemp("shadow-home"), mlflow_server, demo, MODEL)
    champion = register(config, training_frame, model)
    registry.promote(config.mlflow.tracking_uri, MODEL, champion)
    # The challenger: a network far larger than the champion's, so its answers differ and its
    # forward pass is really slower (what degrades the canary below).
    big = SMALL.model_copy(update={"settings": {"hidden_sizes": [2048, 2048]}})
    other = train.train(training_frame, schema, FAST.model_copy(update={"epochs": 1}), big).model
    challenger = register(config, training_frame, other)  # gets @challenger
    assert (champion, challenger) == ("1", "2")
    body = sample_request(config, schema)["rows"][0]
    rows = [{**body, "loan_amount": 5000 + 1000 * i} for i in range(30)]
    return Home(config, model, rows)


def _serving(home: Home, name: str, **settings: object) -> Iterator[str]:
    serving_settings = home.config.serving.model_copy(update={"port": free_port(), **settings})
    with serving(home.config.model_copy(update={"serving": serving_settings}), name) as url:
        yield url


@pytest.fixture(scope="module")
def shadowed(home: Home) -> Iterator[str]:
    yield from _serving(home, "bentoml-shadow", shadow=True)


@pytest.fixture(scope="module")
def canary(home: Home) -> Iterator[str]:
    # The default latency bound (p95 at most 2x the champion's); the challenger's big network
    # does not meet it.
    settings = CanaryConfig(percent=50, min_requests=5)
    yield from _serving(home, "bentoml-canary", canary=settings)


def _expected(home: Home, row: dict[str, object]) -> list[dict[str, object]]:
    features = OnlineFeatures(home.config, home.champion.schema).frame([row])
    model = home.champion
    return answers(model.schema, model.classes, model.predict(features))


def _shadow_lines(home: Home, count: int) -> dict[str, shadow_report.ShadowSummary]:
    """The shadow log once ``count`` requests are in it (the service writes it afterwards)."""
    since = datetime.now(UTC) - timedelta(hours=1)
    deadline = time.monotonic() + 60
    while True:
        found = shadow_report.summarize(home.config.shadow_log_dir, since)
        if ("2" in found and found["2"].requests >= count) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_shadowed_challenger_never_changes_an_answer_and_is_logged(
    home: Home, shadowed: str
) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    deadline = time.monotonic() + 60  # the challenger loads in the background
    while "2" not in shadow_report.summarize(home.config.shadow_log_dir, since):
        assert time.monotonic() < deadline, "the challenger was never shadowed"
        httpx.post(f"{shadowed}/predict", json={"rows": home.rows[:1]}, timeout=10)
        time.sleep(1)
    for row in home.rows:
        answer = httpx.post(f"{shadowed}/predict", json={"rows": [row]}, timeout=10).json()
        assert answer["model_version"] == "1", answer
        [got], [want] = answer["predictions"], _expected(home, row)
        assert got["predicted_class"] == want["predicted_class"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
    seen = _shadow_lines(home, len(home.rows))["2"]
    assert seen.requests >= len(home.rows) and seen.champion_versions == ["1"]
    assert 0 <= seen.agreement <= 1 and seen.mean_difference > 0  # another model: it differs
    assert seen.latency_ms[1] > 0 and seen.champion_latency_ms[1] > 0


def test_the_challenger_runs_in_a_process_of_its_own(home: Home, shadowed: str) -> None:
    """Not in the service's worker, where its forward pass would hold the GIL while callers
    wait: in a process the worker spawned."""
    _shadow_lines(home, len(home.rows))
    since = datetime.now(UTC) - timedelta(hours=1)
    pids = {entry["pid"] for entry in read_entries(home.config.shadow_log_dir, since)}
    assert len(pids) == 1, pids
    challenger = psutil.Process(pids.pop())
    assert "spawn_main" in " ".join(challenger.cmdline())
    assert "_bentoml_impl.worker" in " ".join(challenger.parent().cmdline())


def test_shadow_report_and_the_promotion_rule_read_the_same_evidence(
    home: Home, shadowed: str
) -> None:
    seen = _shadow_lines(home, len(home.rows))["2"]
    env = {**mlflow_env(home.config.mlflow.port), "AIINFRA_MLFLOW__MODEL_NAME": MODEL}
    report = run_cli(home.config.home, "shadow-report", env=env)
    assert report.returncode == 0, report.stderr
    print(report.stdout)  # the report, for the record (pytest -s)
    assert "challenger 2 against champion 1" in report.stdout
    assert f"requests shadowed  {seen.requests}" in report.stdout
    refused = run_cli(
        home.config.home, "promote", "2", env={**env, "AIINFRA_GATE__SHADOW__MIN_REQUESTS": "1000"}
    )
    assert refused.returncode == 1
    assert f"shadow traffic: {seen.requests} of the 1000 requests gate.shadow asks for" in (
        refused.stderr
    )
    assert registry.alias_version(home.config.mlflow.tracking_uri, MODEL, "champion") == "1"


def test_a_worse_canary_stops_by_itself_without_a_failed_request(home: Home, canary: str) -> None:
    versions: list[str] = []
    deadline = time.monotonic() + 90
    stopped = None
    while time.monotonic() < deadline and stopped is None:
        for row in home.rows:
            response = httpx.post(f"{canary}/predict", json={"rows": [row]}, timeout=10)
            assert response.status_code == 200, response.text  # never a failed request
            versions.append(response.json()["model_version"])
        tags = registry.version_tags(home.config.mlflow.tracking_uri, MODEL, "2")
        stopped = tags.get("canary_stopped")
    assert "2" in versions, "the challenger never answered"  # the canary ran
    assert stopped is not None and "p95 latency" in stopped, stopped
    after = [
        httpx.post(f"{canary}/predict", json={"rows": [row]}, timeout=10).json()["model_version"]
        for row in home.rows
    ]
    assert set(after) == {"1"}  # stopped: the champion answers everything


def _served(version: str) -> Served:
    return Served(version, None)  # type: ignore[arg-type]  # the canary reads versions only


def test_the_canary_compares_error_rates_once_each_version_has_enough_requests() -> None:
    stops: list[tuple[str, str]] = []
    guard = Canary(
        CanaryConfig(percent=10, min_requests=10, max_error_rate_increase=0.05),
        lambda version, why: stops.append((version, why)),
    )
    for _ in range(10):
        guard.observe("1", False, 1.0, "1", "2")
    for i in range(9):
        guard.observe("2", i < 3, 1.0, "1", "2")  # 3 failures, but only 9 requests yet
    assert guard.stopped == {}
    guard.observe("2", False, 1.0, "1", "2")
    assert "error rate 30.0% against the champion's 0.0%" in guard.stopped["2"]
    time.sleep(0.2)  # the stop is recorded from a thread
    assert stops and stops[0][0] == "2"
    assert guard.choose(_served("1"), _served("2")).version == "1"  # stopped for good
    assert guard.choose(_served("1"), _served("3")).version in {"1", "3"}  # a new challenger
