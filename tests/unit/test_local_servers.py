"""Local servers: secrets kept owner-only and whole, pid files that cannot name a stranger, an
MLflow server that still reads its webhooks after a restart, and starts that fail fast (a taken
port, a server that exits) without ever stopping another server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from cryptography.fernet import Fernet
from mlflow import MlflowClient

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig, load_config
from aiinfra.release import webhooks
from aiinfra_cli import workflow
from tests.conftest import SMOKE, free_port, smoke_config


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformConfig:
    """A home whose secrets come from its run directory, not from this environment."""
    monkeypatch.delenv(webhooks.SECRET_ENV, raising=False)
    monkeypatch.delenv(local_servers.ENCRYPTION_KEY_ENV, raising=False)
    return load_config(SMOKE, home=tmp_path)


def test_webhook_secret_is_made_owner_only_and_kept(home: PlatformConfig) -> None:
    secret = local_servers.webhook_secret(home)
    path = home.run_dir / "webhook.secret"
    assert len(secret) >= 32 and path.read_text() == secret
    assert _mode(path) == 0o600
    assert local_servers.webhook_secret(home) == secret
    assert [p.name for p in home.run_dir.iterdir()] == ["webhook.secret"], "no temp file left"


@pytest.mark.parametrize("left", ["", " \n"])
def test_an_empty_webhook_secret_file_is_replaced_not_used(home: PlatformConfig, left: str) -> None:
    # What a crash between creating the file and writing it left behind.
    path = home.run_dir / "webhook.secret"
    home.run_dir.mkdir(parents=True)
    path.write_text(left)
    secret = local_servers.webhook_secret(home)
    assert secret.strip() and len(secret) >= 32
    assert path.read_text() == secret and _mode(path) == 0o600


def test_mlflow_gets_a_webhook_encryption_key_kept_for_the_home(
    home: PlatformConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = local_servers.mlflow_service(home).env[local_servers.ENCRYPTION_KEY_ENV]
    Fernet(key)  # the format MLflow builds its cipher from
    path = home.run_dir / "mlflow-webhook.key"
    assert path.read_text() == key and _mode(path) == 0o600
    assert local_servers.mlflow_service(home).env[local_servers.ENCRYPTION_KEY_ENV] == key
    own = Fernet.generate_key().decode()
    monkeypatch.setenv(local_servers.ENCRYPTION_KEY_ENV, own)
    assert local_servers.mlflow_service(home).env[local_servers.ENCRYPTION_KEY_ENV] == own


@pytest.mark.parametrize("left", ["", "not-a-key"])
def test_an_unusable_encryption_key_file_is_replaced(home: PlatformConfig, left: str) -> None:
    path = home.run_dir / "mlflow-webhook.key"
    home.run_dir.mkdir(parents=True)
    path.write_text(left)
    key = local_servers.webhook_encryption_key(home)
    Fernet(key)
    assert path.read_text() == key and _mode(path) == 0o600


@pytest.fixture
def stranger() -> Iterator[psutil.Process]:
    """A process of someone else's, leading its own process group, as a server would."""
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield psutil.Process(process.pid)
    process.kill()
    process.wait()


def _web_service(home: PlatformConfig) -> local_servers.Service:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return local_servers.Service("web", command, {}, f"http://127.0.0.1:{port}/", home.run_dir)


def test_stop_never_signals_a_process_that_took_over_the_recorded_pid(
    home: PlatformConfig, stranger: psutil.Process
) -> None:
    service = _web_service(home)
    home.run_dir.mkdir(parents=True)
    recorded = [
        str(stranger.pid),  # a bare pid, as older versions wrote it: not the service's program
        json.dumps({"pid": stranger.pid, "started": stranger.create_time() - 3600}),
        json.dumps({"pid": stranger.pid, "started": stranger.create_time()}),  # same start only
    ]
    for text in recorded:
        service.pid_file.write_text(text)
        assert local_servers.running_pid(service) is None, text
        assert local_servers.stop(service) is False, text
        assert not service.pid_file.exists()
        time.sleep(0.1)
        assert stranger.is_running() and stranger.status() != psutil.STATUS_ZOMBIE, text


def test_stop_still_stops_the_service_it_started(home: PlatformConfig) -> None:
    service = _web_service(home)
    pid = local_servers.start(service, timeout=30)
    try:
        recorded = json.loads(service.pid_file.read_text())
        started = psutil.Process(pid).create_time()
        assert recorded == {"pid": pid, "started": started, "port": service.port}
        assert _mode(service.pid_file) == 0o600
        assert local_servers.running_pid(service) == pid
        assert local_servers.start(service) == pid, "a healthy one is reused"
    finally:
        assert local_servers.stop(service) is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert local_servers.stop(service) is False


def test_a_restarted_mlflow_server_still_reads_its_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(local_servers.ENCRYPTION_KEY_ENV, raising=False)
    # No minutes of retries on a 500: this test is about the answer, not the client.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    config = smoke_config(tmp_path)
    uri = config.mlflow.tracking_uri
    service = local_servers.mlflow_service(config)
    local_servers.start(service)
    try:
        workflow.register_webhook(config)
        local_servers.stop(service)
        local_servers.start(local_servers.mlflow_service(config))
        # Before the key was kept, the new server process could not decrypt the stored
        # secret: listing answered 500.
        hooks = MlflowClient(tracking_uri=uri, registry_uri=uri).list_webhooks()
        assert [h.name for h in hooks] == [f"aiinfra-deploy-{config.serving.port}"]
        workflow.register_webhook(config)  # replaces it
    finally:
        local_servers.stop(service)


class _Failing(BaseHTTPRequestHandler):
    """An MLflow server that answers every call with 500, as one that cannot decrypt its
    webhooks does."""

    def _answer(self) -> None:
        body = b'{"error_code": "INTERNAL_ERROR", "message": "InvalidToken"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_serving_fails_fast_on_a_failing_registry_and_leaves_no_service(
    home: PlatformConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    registry = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    config = home.model_copy(
        update={
            "mlflow": home.mlflow.model_copy(
                update={"tracking_uri": f"http://127.0.0.1:{registry.server_port}"}
            )
        }
    )
    bentoml = _web_service(config)  # stands in for BentoML: quick to start, easy to see
    monkeypatch.setattr(local_servers, "bentoml_service", lambda _: bentoml)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"failed on its webhooks.*webhooks` table"):
            workflow.start_serving(config)
        assert time.monotonic() - started < 30, "MLflow's client retried for minutes"
        assert local_servers.running_pid(bentoml) is None, "the service was left running"
    finally:
        local_servers.stop(bentoml)
        registry.shutdown()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def _elapsed(since: float) -> float:
    elapsed = time.monotonic() - since
    print(f"reported after {elapsed:.2f} s")
    return elapsed


@pytest.mark.parametrize(
    ("section", "make", "env"),
    [
        ("mlflow", local_servers.mlflow_service, "AIINFRA_MLFLOW__PORT"),
        ("serving", local_servers.bentoml_service, "AIINFRA_SERVING__PORT"),
    ],
)
def test_a_taken_port_is_refused_at_once_naming_it_and_the_setting(
    home: PlatformConfig,
    held_port: int,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    make: Callable[[PlatformConfig], local_servers.Service],
    env: str,
) -> None:
    """Before, the server was started anyway: it died on the bind, after its imports, and the
    start waited out its whole timeout (120 s, 240 s) before printing the log's traceback."""
    config = home.model_copy(
        update={section: getattr(home, section).model_copy(update={"port": held_port})}
    )
    service = make(config)
    began = time.monotonic()
    with pytest.raises(local_servers.ServerStartError) as raised:
        local_servers.start(service, timeout=60)
    assert _elapsed(began) < 2
    message = str(raised.value)
    assert f"127.0.0.1:{held_port} is already in use" in message and env in message, message
    assert f"`{section}.port`" in message and len(message.splitlines()) == 1, message
    assert local_servers.running_pid(service) is None and not service.pid_file.exists()
    # The variable named is the one that moves the port.
    monkeypatch.setenv(env, "4321")
    assert getattr(load_config(SMOKE, home=home.home), section).port == 4321


# Serves on the port after `--port` (as MLflow and BentoML take it, and a pid file written by an
# older version is read back from).
SERVE = (
    "import sys; from http.server import HTTPServer, SimpleHTTPRequestHandler as H; "
    "HTTPServer(('127.0.0.1', int(sys.argv[sys.argv.index('--port') + 1])), H).serve_forever()"
)


def _server(home: PlatformConfig, port: int, bind: int | None = None) -> local_servers.Service:
    """A quick server answering on ``port``; it binds ``bind`` instead when given."""
    command = [sys.executable, "-c", SERVE, "--port", str(bind or port)]
    return local_servers.Service("web", command, {}, f"http://127.0.0.1:{port}/", home.run_dir)


def test_a_server_that_exits_while_starting_is_reported_at_once_with_its_error_line(
    home: PlatformConfig, held_port: int
) -> None:
    """A real failure after the port check: the process binds a port someone else holds (as
    when two starts race for one), prints a traceback and exits."""
    service = _server(home, free_port(), bind=held_port)
    began = time.monotonic()
    with pytest.raises(local_servers.ServerStartError) as raised:
        local_servers.start(service, timeout=60)
    assert _elapsed(began) < 5, "waited for the timeout"  # python's start, then one poll
    message = str(raised.value)
    first, excerpt = message.splitlines()
    assert first == f"web exited while starting; log {service.log_file}:", message
    assert excerpt.strip() == "OSError: [Errno 98] Address already in use", message
    assert "Traceback" in service.log_file.read_text(), "the whole log stays in the file"
    assert not service.pid_file.exists()


def test_a_server_that_never_answers_is_stopped_at_the_timeout(home: PlatformConfig) -> None:
    service = local_servers.Service(
        "web", ["sleep", "60"], {}, f"http://127.0.0.1:{free_port()}/", home.run_dir
    )
    with pytest.raises(local_servers.ServerStartError, match=r"did not answer .* within 1 s"):
        local_servers.start(service, timeout=1)
    assert not service.pid_file.exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "60"]]


def test_a_start_on_another_port_never_stops_the_server_of_the_home(
    home: PlatformConfig, held_port: int
) -> None:
    """Before, the pid file (one per home) made the start stop the home's server, whatever its
    port, then wait out its timeout for a new one that could not bind."""
    running = _server(home, free_port())
    pid = local_servers.start(running, timeout=30)
    try:
        recorded = running.pid_file.read_text()
        for elsewhere in (_server(home, free_port()), _server(home, held_port)):
            began = time.monotonic()
            with pytest.raises(local_servers.ServerStartError) as raised:
                local_servers.start(elsewhere, timeout=60)
            assert _elapsed(began) < 2
            message = str(raised.value)
            assert f"already runs on port {running.port} (pid {pid})" in message, message
            assert "`aiinfra down`" in message and f"kill {pid}" in message, message
            assert local_servers.healthy(running.health_url), "the running server was stopped"
            assert running.pid_file.read_text() == recorded
        # A pid file from an older version has no port: the server's command line says it.
        record = json.loads(recorded)
        del record["port"]
        running.pid_file.write_text(json.dumps(record))
        with pytest.raises(local_servers.ServerStartError, match=f"port {running.port} "):
            local_servers.start(_server(home, free_port()), timeout=60)
        assert local_servers.start(running, timeout=30) == pid, "reused on its own port"
    finally:
        local_servers.stop(running)


def test_starts_at_once_share_one_server(home: PlatformConfig) -> None:
    """Each waits for the one before it instead of starting a second process (which would die
    on the port, its pid file having replaced the first's)."""
    service = _server(home, free_port())
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            pids = list(pool.map(lambda _: local_servers.start(service, timeout=30), range(3)))
        assert len(set(pids)) == 1 and local_servers.running_pid(service) == pids[0]
    finally:
        local_servers.stop(service)
