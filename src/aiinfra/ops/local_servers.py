"""Long-running local services (MLflow server, BentoML server) as detached processes.

Each service has a pid file and a log under ``<home>/run``; starting one that is already up
and healthy is a no-op, so ``make run`` can be repeated. The pid file records the process's
start time too: a pid the kernel has since handed to another process is never signalled.
It records the port as well: a server is its service, its home and its port, and starting one
never stops another. A start fails fast, with a :class:`ServerStartError` short enough to
print as-is: at once when the port is taken, within a poll when the new process exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
from cryptography.fernet import Fernet
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from aiinfra.release import webhooks

# MLflow encrypts the webhook secrets it stores with this key; unset, each server process
# makes up its own, and a restarted server can no longer read the webhooks (listing answers 500).
ENCRYPTION_KEY_ENV = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"


class ServerStartError(RuntimeError):
    """A local server did not start; the message (one or two short lines) says why and what to
    do, for a user to read as-is."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str  # on the host and port the server binds
    run_dir: Path
    port_setting: str = ""  # where a user changes the port, for the message when it is taken

    @property
    def host(self) -> str:
        return urlparse(self.health_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.health_url).port or 80

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
        # Nothing is sent anywhere unless the user asks (their own setting is inherited).
        "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
    }
    # `aiinfra` starts this server only when the tracking URI names it: both move together.
    setting = (
        "`mlflow.port` and the port in `mlflow.tracking_uri` (or "
        f"{_env_var('mlflow', 'port')} and {_env_var('mlflow', 'tracking_uri')})"
    )
    url = f"http://{m.host}:{m.port}/health"
    return Service("mlflow", command, env, url, config.run_dir, setting)


def _env_var(section: str, field: str) -> str:
    """The environment variable that overrides ``section.field`` of a profile."""
    settings = PlatformConfig.model_config
    prefix = settings.get("env_prefix") or ""
    delimiter = settings.get("env_nested_delimiter") or "__"
    return f"{prefix}{section}{delimiter}{field}".upper()


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
    setting = f"`serving.port` (or {_env_var('serving', 'port')})"
    url = f"http://{s.host}:{s.port}/livez"
    return Service("bentoml", command, env, url, config.run_dir, setting)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and benchmarks that start servers)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _Record:
    """What a pid file says about the server it names."""

    pid: int
    started: float | None  # None: a bare pid, written by an older version
    port: int | None  # None: not recorded (an older version), nor on its command line


def running_pid(service: Service) -> int | None:
    """The pid of the service's process, if the one its pid file names is still that process:
    same start time, and the service's program on its command line. A pid the kernel has
    reused for another process since is not the service's."""
    record = _running_record(service)
    return record.pid if record is not None else None


def _running_record(service: Service) -> _Record | None:
    """The pid file's record, while the process it names is still the service's."""
    record = _read_pid_file(service.pid_file)
    if record is None:
        return None
    try:
        process = psutil.Process(record.pid)
        if record.started is not None and abs(process.create_time() - record.started) > 0.01:
            return None
        if record.started is not None and process.status() == psutil.STATUS_ZOMBIE:
            # Its leader exited (unreaped, it keeps the pid): its group may still hold workers.
            return record
        command_line = process.cmdline()
    except psutil.Error:  # gone, or another user's
        return None
    if service.command[0] not in command_line:
        return None
    if record.port is None:
        return _Record(record.pid, record.started, _port_on_command_line(command_line))
    return record


def _port_on_command_line(command_line: list[str]) -> int | None:
    """The port a server started by an older version listens on (its pid file did not say)."""
    for flag, value in itertools.pairwise(command_line):
        if flag == "--port" and value.isdigit():
            return int(value)
    return None


def _read_pid_file(path: Path) -> _Record | None:
    """The record in a pid file. Older versions wrote a bare pid (only the command line is
    checked then), or no port."""
    try:
        recorded = json.loads(path.read_text())
        if isinstance(recorded, int):
            return _Record(recorded, None, None)
        port = recorded.get("port")
        return _Record(
            int(recorded["pid"]),
            float(recorded["started"]),
            int(port) if port is not None else None,
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_pid_file(service: Service, pid: int) -> None:
    record = {"pid": pid, "started": psutil.Process(pid).create_time(), "port": service.port}
    _write_private(service.pid_file, json.dumps(record), replace=True)


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
    """Start ``service`` detached (or reuse the one of this home already on its port) and wait
    until it answers. Raises :class:`ServerStartError` at once when the port is taken or this
    home's server runs on another port, and within a poll when the new process exits."""
    service.run_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(service):
        running = _running_record(service)
        if running is not None:
            _refuse_another_port(service, running)
            if not _has_exited(running.pid):
                # Reused once it answers (it may still be starting), never stopped.
                _wait_ready(service, running.pid, timeout, log_from=0, started_here=False)
                return running.pid
            stop(service)  # its leader exited (unreaped here): what is left of its group
        ensure_port_free(service)
        return _launch(service, timeout)


@contextlib.contextmanager
def _start_lock(service: Service) -> Iterator[None]:
    """One start of a service per home at a time: a second waits, then finds the first's
    server, instead of both writing the pid file. The kernel drops the lock with its holder."""
    with (service.run_dir / f"{service.name}.start.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _refuse_another_port(service: Service, running: _Record) -> None:
    """One server of a service per home (they share its stores): the one running elsewhere is
    the user's to stop, never this start's."""
    if running.port is None or running.port == service.port:
        return
    raise ServerStartError(
        f"{service.name} for this home already runs on port {running.port} (pid {running.pid}),"
        f" not on the configured {service.port}; stop it first with `aiinfra down` (same home)"
        f" or `kill {running.pid}`"
    )


def check_startable(service: Service) -> None:
    """Raise now what :func:`start` would raise at once: this home's server runs on another
    port, or another program holds the port. Nothing when this home's server already runs on
    the port (a start reuses it). For callers with work to do before a start (the webhook)."""
    running = _running_record(service)
    if running is not None and not _has_exited(running.pid):
        _refuse_another_port(service, running)
        return
    ensure_port_free(service)


def ensure_port_free(service: Service) -> None:
    """Raise :class:`ServerStartError` when something listens on the service's address. The
    server would fail its bind only after its imports (minutes on a loaded machine): the port
    is tried here, as the server will bind it, before it starts."""
    if not _port_taken(service.host, service.port):
        return
    where = service.port_setting or "the service's port setting"
    raise ServerStartError(
        f"cannot start {service.name}: {service.host}:{service.port} is already in use by "
        f"another program; stop it, or choose a free port with {where}"
    )


def _port_taken(host: str, port: int) -> bool:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return False  # the server reports an unknown host itself
    with socket.socket(family, kind, proto) as probe:
        # As servers do: a port that only has connections closing (TIME_WAIT) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _launch(service: Service, timeout: float) -> int:
    log_from = service.log_file.stat().st_size if service.log_file.exists() else 0
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
    try:
        _wait_ready(service, process.pid, timeout, log_from, started_here=True)
    except ServerStartError:
        service.pid_file.unlink(missing_ok=True)
        _stop_group(process.pid)  # workers its leader left, if any; reaps the leader
        raise
    return process.pid


POLL_SECONDS = 0.25


def _wait_ready(
    service: Service, pid: int, timeout: float, log_from: int, *, started_here: bool
) -> None:
    """Until the service answers; raises once its process has exited, or at ``timeout`` (the
    caller stops a process it ``started_here``; another is left to the user)."""
    deadline = time.monotonic() + timeout
    while not healthy(service.health_url):
        if _has_exited(pid):
            raise ServerStartError(
                f"{service.name} exited while starting{_log_excerpt(service, log_from)}"
            )
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"{service.name} (pid {pid}) did not answer at {service.health_url} within "
                f"{timeout:.0f} s{'' if started_here else ' (`aiinfra down` stops it)'}"
                f"{_log_excerpt(service, log_from)}"
            )
        time.sleep(POLL_SECONDS)


def _has_exited(pid: int) -> bool:
    """True once the process is gone, or a zombie (exited, its parent has not reaped it)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


EXCERPT_LINES = 3
EXCERPT_WIDTH = 240
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TIMESTAMP = re.compile(r"^\d{4}[-/]\d\d[-/]\d\d[T ][\d:.,]+(?:Z|[+-]\d\d:?\d\d)?\s+")
_ERROR = re.compile(r"error|exception|fatal|critical|in use|denied", re.IGNORECASE)


def _log_excerpt(service: Service, log_from: int) -> str:
    """'; log PATH:' and, on a second line, the last error lines this start wrote there (the
    last lines when none reads as an error): a traceback's frames say nothing to a user."""
    lines = _meaningful_lines(_read_from(service.log_file, log_from))
    errors = [line for line in lines if _ERROR.search(line)] or lines
    excerpt = _last_that_fit([_clip(line) for line in errors[-EXCERPT_LINES:]])
    return f"; log {service.log_file}:\n  {excerpt}" if excerpt else f"; log {service.log_file}"


def _clip(line: str) -> str:
    return line if len(line) <= EXCERPT_WIDTH else line[: EXCERPT_WIDTH - 1] + "…"


def _last_that_fit(lines: list[str]) -> str:
    """The last line, and those before it while all fit in one line's width (a chained
    exception repeats itself: its last line says it)."""
    kept: list[str] = []
    for line in reversed(lines):
        if kept and sum(map(len, kept)) + len(line) > EXCERPT_WIDTH:
            break
        kept.insert(0, line)
    return " | ".join(kept)


def _read_from(path: Path, offset: int, most: int = 65536) -> str:
    try:
        with path.open("rb") as log:
            log.seek(max(offset, log.seek(0, os.SEEK_END) - most))
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _meaningful_lines(text: str) -> list[str]:
    """The log's lines less timestamps, colours, traceback frames and code (indented), section
    headers (ending in ':') and repeats."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = _TIMESTAMP.sub("", _ANSI.sub("", raw)).rstrip()
        if not line.strip() or line[0].isspace() or line.endswith(":"):
            continue
        if not any(c.isalnum() for c in line):  # rules and box drawing
            continue
        if kept and kept[-1] == line:
            continue
        kept.append(line)
    return kept


def stop(service: Service, timeout: float = 20) -> bool:
    """Stop the service's process group; True if something was running."""
    pid = running_pid(service)
    service.pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    return _stop_group(pid, timeout)


def _stop_group(pid: int, timeout: float = 20) -> bool:
    """SIGTERM the process group ``pid`` leads, SIGKILL once ``timeout`` passes; True if it
    was there."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(pid)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # the group left just now
        os.killpg(pid, signal.SIGKILL)
    return True


def _reap(pid: int) -> None:
    """Reap the leader when this process started it: an exited child stays a zombie, and a
    zombie still counts as alive to killpg (a wait for the group would run to SIGKILL)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
