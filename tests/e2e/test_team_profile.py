"""The team profile for real: MLflow on PostgreSQL with proxied artifacts, Feast's online store
on Redis, both servers started here from Debian's packages (scripts/team-services.sh). One
pipeline run and one served prediction: the rest of the flow is the local e2e's.

Skip it with `-m "not team"`; without the server binaries it skips itself, naming them."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import psycopg2
import pytest
import redis
import tenacity
import yaml

from aiinfra.data import feature_store
from aiinfra.data.online_reader import OnlineReader
from aiinfra.monitoring import retraining
from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.project.definition import load_project
from aiinfra.release import registry
from aiinfra.runtime.api import OnlineFeatures
from aiinfra_cli.workflow import run_training, sample_request, start_serving, wait_for_version
from tests.conftest import SMOKE, free_port
from tests.e2e.conftest import running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.team]

SCRIPT = PROJECT_ROOT / "scripts" / "team-services.sh"
TEAM = PROJECT_ROOT / "configs" / "team.yaml"


class Servers:
    def __init__(self, directory: Path, pg_port: int, redis_port: int) -> None:
        self.directory, self.pg_port, self.redis_port = directory, pg_port, redis_port
        self.password = secrets.token_urlsafe(16)
        self.redis_password = secrets.token_urlsafe(16)


def _recording_redis_server(directory: Path) -> Path:
    """A folder whose ``redis-server`` writes its arguments to DIRECTORY/redis-server.argv,
    then runs the real one: Redis rewrites its process title once it runs, so its command
    line is caught as the script gave it."""
    real = shutil.which("redis-server")
    assert real is not None
    shim = directory / "bin" / "redis-server"
    shim.parent.mkdir()
    record = shlex.quote(str(directory / "redis-server.argv"))
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexec {shlex.quote(real)} "$@"\n')
    shim.chmod(0o755)
    return shim.parent


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    check = subprocess.run([str(SCRIPT), "check"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"team profile needs PostgreSQL and Redis: {check.stderr.strip()}")
    # Under /tmp and world-traversable: as root, PostgreSQL runs as the `postgres` user.
    directory = Path(tempfile.mkdtemp(prefix="aiinfra-team-"))
    directory.chmod(0o755)
    found = Servers(directory, free_port(), free_port())
    # Secrets only through the environment, as in production: every process started from
    # here (MLflow, the pipeline's tasks, BentoML) inherits them.
    secret_env = {"PGPASSWORD": found.password, "AIINFRA_REDIS_PASSWORD": found.redis_password}
    saved = {name: os.environ.get(name) for name in secret_env}
    os.environ.update(secret_env)
    try:
        start = [str(SCRIPT), "start", str(directory), str(found.pg_port), str(found.redis_port)]
        path = f"{_recording_redis_server(directory)}{os.pathsep}{os.environ['PATH']}"
        done = subprocess.run(
            start, capture_output=True, text=True, timeout=180, env={**os.environ, "PATH": path}
        )
        if done.returncode != 0:
            pytest.fail(f"team services did not start:\n{done.stdout}\n{done.stderr}")
        yield found
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], timeout=120)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(directory, ignore_errors=True)


def test_the_redis_password_is_on_no_command_line(servers: Servers) -> None:
    # Any local user can read a command line; the password is in an owner-only file instead.
    given = (servers.directory / "redis-server.argv").read_text()
    assert "--port" in given and servers.redis_password not in given
    pid = int((servers.directory / "redis.pid").read_text())
    assert servers.redis_password not in " ".join(psutil.Process(pid).cmdline())
    config = servers.directory / "redis.conf"
    assert config.stat().st_mode & 0o777 == 0o600
    assert redis.Redis(port=servers.redis_port, password=servers.redis_password).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=servers.redis_port).get("x")


def team_config(home: Path, servers: Servers) -> PlatformConfig:
    """configs/team.yaml on this test's ports, with the smoke profile's sizes."""
    team: dict[str, Any] = yaml.safe_load(TEAM.read_text())
    smoke: dict[str, Any] = yaml.safe_load(SMOKE.read_text())
    mlflow_port = free_port()
    store = team["mlflow"]["backend_store_uri"]
    online = dict(team["features"]["online_store"])
    assert ":5432/" in store and online["connection_string"].startswith("127.0.0.1:6379,")
    online["connection_string"] = online["connection_string"].replace(
        ":6379,", f":{servers.redis_port},"
    )
    mlflow = {
        **team["mlflow"],
        "port": mlflow_port,
        "tracking_uri": f"http://127.0.0.1:{mlflow_port}",
        "backend_store_uri": store.replace(":5432/", f":{servers.pg_port}/"),
    }
    sizes = {key: smoke[key] for key in ("project", "model", "training", "validation", "gate")}
    return load_config(
        TEAM,
        home=home,
        mlflow=mlflow,
        features={**team["features"], "online_store": online},
        serving={"port": free_port(), "poll_seconds": 1.0},
        **sizes,
    )


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, servers: Servers
) -> Iterator[PlatformConfig]:
    yield from running_platform(team_config(tmp_path_factory.mktemp("team"), servers))


def test_a_run_registers_and_promotes_in_postgres_with_proxied_artifacts(
    platform: PlatformConfig, servers: Servers
) -> None:
    outcome = run_training(platform, commit="team0123")
    assert outcome.version == "1" and outcome.promoted, outcome.describe()
    # The registry is PostgreSQL's: the rows are there, and no sqlite file was made.
    with (
        psycopg2.connect(
            host="127.0.0.1", port=servers.pg_port, user="aiinfra", dbname="mlflow"
        ) as db,
        db.cursor() as cursor,
    ):
        cursor.execute("SELECT name, version FROM model_versions")
        assert cursor.fetchall() == [(platform.model_name, 1)]
        cursor.execute("SELECT alias, version FROM registered_model_aliases ORDER BY alias")
        assert ("champion", 1) in cursor.fetchall()
    assert not (platform.mlflow_dir / "mlflow.db").exists()
    # Artifacts went through the server to its destination (the model and the drift profile).
    stored = {p.name for p in (platform.mlflow_dir / "artifacts").rglob("*") if p.is_file()}
    assert {"weights.safetensors", "model.json", "profile.json"} <= stored
    tags = registry.version_tags(platform.mlflow.tracking_uri, platform.model_name, "1")
    assert tags["git_commit"] == "team0123" and tags["gate"] == "passed"


def test_the_service_answers_from_the_redis_online_store(
    platform: PlatformConfig, servers: Servers, tmp_path: Path
) -> None:
    online = redis.Redis(port=servers.redis_port, password=servers.redis_password)
    assert online.dbsize() > 0, "materialize wrote no features to Redis"
    schema = load_project(platform).schema
    body = sample_request(platform, schema)
    answer = wait_for_version(start_serving(platform), body, "1", timeout=120)
    served = np.array([p["probability"] for p in answer["predictions"]])
    model = registry.load_version(platform.mlflow.tracking_uri, platform.model_name, "1", tmp_path)
    expected = model.predict(OnlineFeatures(platform, schema).frame(body["rows"]))
    np.testing.assert_allclose(served, expected, rtol=1e-5)


def test_the_online_reader_answers_what_feast_answers_on_redis(platform: PlatformConfig) -> None:
    """Redis answers an unknown entity differently from sqlite (empty values, not no row):
    the serving path's reader still matches get_online_features row for row."""
    schema = load_project(platform).schema
    store = feature_store.open_store(platform)
    known = [
        {k: row[k] for k in schema.entity_names} for row in sample_request(platform, schema)["rows"]
    ]
    unknown = {k.name: (999_999_999 if k.type == "int" else "none") for k in schema.entities}
    half = {**known[0], **{k.name: unknown[k.name] for k in schema.entities[1:]}}
    rows = [*known, unknown, half, known[0]]
    names = [f.name for f in schema.stored_features]
    ours = OnlineReader(store, schema.feature_service).read(rows)[names]
    feast = feature_store.online_features(store, schema, rows)
    pd.testing.assert_frame_equal(ours, feast, check_exact=True)
    assert ours.iloc[: len(known)].notna().all().all() and ours.iloc[len(known)].isna().all()


def _redis_process(servers: Servers) -> psutil.Process:
    return psutil.Process(int((servers.directory / "redis.pid").read_text()))


@contextlib.contextmanager
def _redis_hung(servers: Servers) -> Iterator[None]:
    """Redis stopped (SIGSTOP): the kernel still accepts connections, nothing answers on them."""
    process = _redis_process(servers)
    process.suspend()
    try:
        yield
    finally:
        process.resume()


@contextlib.contextmanager
def _redis_down(servers: Servers) -> Iterator[None]:
    """Redis gone (connections refused), then started again with the arguments the script gave
    it. It keeps nothing on disk by itself: a snapshot taken first brings the features back."""
    client = redis.Redis(port=servers.redis_port, password=servers.redis_password)
    client.save()
    process = _redis_process(servers)
    process.terminate()
    process.wait(timeout=30)
    try:
        yield
    finally:
        real = shutil.which("redis-server")
        assert real is not None
        argv = (servers.directory / "redis-server.argv").read_text().splitlines()
        subprocess.run([real, *argv], check=True, timeout=30)  # it daemonizes
        answering = tenacity.Retrying(
            stop=tenacity.stop_after_delay(30),
            wait=tenacity.wait_fixed(0.2),
            retry=tenacity.retry_if_exception_type(redis.ConnectionError),
            reraise=True,
        )
        answering(client.ping)
    assert client.dbsize() > 0, "Redis came back without the features"


def _until_ok(send: Callable[[], httpx.Response], seconds: float) -> httpx.Response:
    """The first 200 within ``seconds``, else the last answer."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(seconds),
        wait=tenacity.wait_fixed(0.5),
        retry=tenacity.retry_if_result(lambda answer: answer.status_code != 200),
        retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
    )
    answer: httpx.Response = retrying(send)
    return answer


@pytest.mark.parametrize(
    "outage", [pytest.param(_redis_hung, id="hung"), pytest.param(_redis_down, id="down")]
)
def test_a_store_outage_answers_503_with_retry_after_and_recovers_without_a_restart(
    platform: PlatformConfig,
    servers: Servers,
    outage: Callable[[Servers], contextlib.AbstractContextManager[None]],
) -> None:
    base_url = start_serving(platform)  # the service the test above started
    pid = local_servers.running_pid(local_servers.bentoml_service(platform))
    assert pid is not None
    body = sample_request(platform, load_project(platform).schema)
    retry_after = str(platform.serving.retry_after_seconds)
    # The client waits past the service's 30 s traffic timeout, to see what a stalled request
    # would get; a store failure must come back as a 503 well before it.
    with httpx.Client(base_url=base_url, timeout=60) as http:
        with outage(servers):
            for path in ("/predict", "/predict_batch"):
                started = time.monotonic()
                answer = http.post(path, json=body)
                took = time.monotonic() - started
                assert answer.status_code == 503, f"{path}: {answer.status_code} {answer.text}"
                assert answer.headers.get("retry-after") == retry_after, answer.headers
                assert took < 30, f"{path} answered 503 only after {took:.1f} s"
            assert http.get("/readyz").status_code != 200
        # The same process answers again once the store does, and says it is ready.
        answer = _until_ok(lambda: http.post("/predict", json=body), 30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
        assert http.get("/readyz").status_code == 200
    assert local_servers.running_pid(local_servers.bentoml_service(platform)) == pid


def test_drift_check_compares_recent_data_with_the_champions_reference(
    platform: PlatformConfig,
) -> None:
    decision = retraining.check(platform, "data")
    assert decision.champion == "1" and decision.reference_rows > 0, decision.reason
    compared = {f.feature for f in decision.features}
    assert {"loan_amount", "credit_score", "regional_default_rate"} <= compared
