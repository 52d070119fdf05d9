"""Long-running local services (MLflow server, BentoML server) as detached processes.

Each service has a pid file and a log under ``<home>/run``; starting one that is already up
and healthy is a no-op, so ``make run`` can be repeated. The pid file records the process's
start time too: a pid the kernel has since handed to another process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from cryptography.fernet import Fernet
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from aiinfra.release import webhooks

# MLflow encrypts the webhook secrets it stores with this key; unset, each server process
# makes up its own, and a restarted server can no longer read the webhooks (listing answers 500).
ENCRYPTION_KEY_ENV = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def mlflow_service(config: PlatformConfig) -> Service:
    m = config.mlflow
    store = config.mlflow_dir
    command = [
        _bin("mlflow"),
        "server",
        "--host",
        m.host,
        "--port",
        str(m.port),
        "--backend-store-uri",
        # The team profile's PostgreSQL URI names no password: libpq reads PGPASSWORD.
        m.backend_store_uri or f"sqlite:///{store / 'mlflow.db'}",
        # Proxied artifacts: clients upload through the server, never to its disk directly.
        "--artifacts-destination",
        m.artifacts_destination or str(store / "artifacts"),
        "--workers",
        "1",
    ]
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Registry webhooks deliver to the BentoML service on this machine, over plain HTTP on
        # loopback: allowed here only (MLflow's defaults, https to public hosts, stay in force
        # for a team server).
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "https,http",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        ENCRYPTION_KEY_ENV: webhook_encryption_key(config),
    }
    return Service("mlflow", command, env, f"http://{m.host}:{m.port}/health", config.run_dir)


def webhook_secret(config: PlatformConfig) -> str:
    """The registry webhook's HMAC secret: from the environment, else one generated for this
    home and kept (owner-only) in its run directory, never in the repo."""
    from_env = os.environ.get(webhooks.SECRET_ENV)
    if from_env:
        return from_env
    return _kept_secret(config.run_dir / "webhook.secret", lambda: secrets.token_urlsafe(32))


def webhook_encryption_key(config: PlatformConfig) -> str:
    """The key the MLflow server encrypts stored webhook secrets with: from the environment,
    else generated once for this home and kept (owner-only) in its run directory, so that a
    restarted server still reads the webhooks it stored."""
    from_env = os.environ.get(ENCRYPTION_KEY_ENV)
    if from_env:
        return from_env
    path = config.run_dir / "mlflow-webhook.key"
    # A file holding no valid key is replaced: MLflow cannot have started, nor encrypted
    # anything, with it.
    return _kept_secret(path, lambda: Fernet.generate_key().decode(), usable=_is_fernet_key)


def _is_fernet_key(text: str) -> bool:
    try:
        Fernet(text)
    except ValueError:
        return False
    return True


def _kept_secret(
    path: Path, generate: Callable[[], str], usable: Callable[[str], bool] = bool
) -> str:
    """The secret kept in ``path``, made with ``generate`` when there is none yet, or when the
    file holds none that is ``usable`` (an older version could leave it empty if it crashed
    mid-write)."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        # Created without replacing: two first uses at once agree on whichever came first.
        _write_private(path, generate(), replace=False)
    else:
        if usable(kept):
            return kept
        _write_private(path, generate(), replace=True)
    return path.read_text().strip()


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write ``path`` owner-only and all at once: a temp file in the same directory (mkstemp
    makes it 0600), flushed to disk, then moved into place, so a crash leaves the old file or
    the new one, never a partial one. Without ``replace`` an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def bentoml_service(config: PlatformConfig) -> Service:
    s = config.serving
    command = [
        _bin("bentoml"),
        "serve",
        "serving.service:ModelService",
        "--working-dir",
        str(PROJECT_ROOT),
        "--host",
        s.host,
        "--port",
        str(s.port),
    ]
    env = {
        "AIINFRA_CONFIG_JSON": config.to_json(),
        webhooks.SECRET_ENV: webhook_secret(config),
        "BENTOML_HOME": str(config.home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    return Service("bentoml", command, env, f"http://{s.host}:{s.port}/livez", config.run_dir)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and benchmarks that start servers)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def running_pid(service: Service) -> int | None:
    """The pid of the service's process, if the one its pid file names is still that process:
    same start time, and the service's program on its command line. A pid the kernel has
    reused for another process since is not the service's."""
    recorded = _read_pid_file(service.pid_file)
    if recorded is None:
        return None
    pid, started = recorded
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 0.01:
            return None
        if started is not None and process.status() == psutil.STATUS_ZOMBIE:
            # Its leader exited (unreaped, it keeps the pid): its group may still hold workers.
            return pid
        return pid if service.command[0] in process.cmdline() else None
    except psutil.Error:  # gone, or another user's
        return None


def _read_pid_file(path: Path) -> tuple[int, float | None] | None:
    """(pid, start time) from a pid file; a bare pid (written by an older version) has no start
    time, and only its command line is checked."""
    try:
        recorded = json.loads(path.read_text())
        if isinstance(recorded, int):
            return recorded, None
        return int(recorded["pid"]), float(recorded["started"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _write_pid_file(service: Service, pid: int) -> None:
    started = psutil.Process(pid).create_time()
    _write_private(service.pid_file, json.dumps({"pid": pid, "started": started}), replace=True)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str, timeout: float) -> bool:
    @retry(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.25),
        retry=retry_if_result(lambda ok: not ok),
    )
    def poll() -> bool:
        return healthy(url)

    try:
        return poll()
    except Exception:  # tenacity.RetryError once the deadline passes
        return False


def _inherited_env() -> dict[str, str]:
    """This process's environment, less the MLflow URIs that MLflow's own setters export:
    a service takes its servers from its config, never from whoever started it."""
    leaked = {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}
    return {k: v for k, v in os.environ.items() if k not in leaked}


def start(service: Service, timeout: float = 120) -> int:
    """Start ``service`` detached (or reuse a healthy one) and wait until it answers."""
    pid = running_pid(service)
    if pid is not None and healthy(service.health_url):
        return pid
    if pid is not None:
        stop(service)
    service.run_dir.mkdir(parents=True, exist_ok=True)
    with service.log_file.open("ab") as log:
        process = subprocess.Popen(
            service.command,
            env={**_inherited_env(), **service.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it; stopped as a group
        )
    _write_pid_file(service, process.pid)
    if not wait_healthy(service.health_url, timeout):
        stop(service)
        tail = service.log_file.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"{service.name} did not become healthy in {timeout:.0f}s; log tail:\n{tail}"
        )
    return process.pid


def stop(service: Service, timeout: float = 20) -> bool:
    """Stop the service's process group; True if something was running."""
    pid = running_pid(service)
    service.pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Reap the leader when this process started it: an exited child stays a zombie, and
        # a zombie still counts as alive below (the wait would always run to SIGKILL).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # the group left just now
        os.killpg(pid, signal.SIGKILL)
    return True
