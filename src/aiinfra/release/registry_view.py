"""A read-only view of the model registry that answers in milliseconds: the command line's
``history``, ``show`` and the checks before ``promote`` and ``rollback``.

Importing MLflow costs 2.5-6 s of CPU, which dwarfs a handful of small reads. For an
``http(s)`` tracking URI the view therefore calls MLflow's REST API (``/api/2.0/mlflow``)
with the standard library, honouring the credentials MLflow's own client reads
(``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` and
``~/.mlflow/credentials``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``). Any other URI (sqlite,
file, databricks), or an authentication scheme only MLflow implements (``MLFLOW_TRACKING_AUTH``,
``MLFLOW_TRACKING_AWS_SIGV4``, credentials in the URI), goes through ``MlflowClient``.

Writes (promotion, rollback) stay in :mod:`aiinfra.release.registry`, which takes the shared
definitions (``ChampionMove``, the history tags, ``RegistryUnavailable``) from here.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

CHAMPION = "champion"
HISTORY_PREFIX = "champion_move."
# The reports register_model logs into a version's run (a stopped run has validation.md).
REPORT_ARTIFACTS = ("reports/validation.html", "reports/gate.md")
# The lineage tags steps.register_model (and components/model.py) put on a version, in the
# order a person reads them.
LINEAGE_TAGS = (
    "pipeline_run",
    "git_commit",
    "data_hash",
    "feature_service",
    "task",
    "model_entry_point",
    "eval_hash",
    "champion_at_evaluation",
    "search_run_id",
)


class RegistryUnavailable(RuntimeError):
    """The registry did not answer a question it must answer (it is down or failing): never
    read as "no such model" or "no champion", which would let an unchecked model through."""


@dataclass(frozen=True)
class ChampionMove:
    at: str
    from_version: str
    to_version: str
    by: str
    reason: str
    kind: str
    forced: bool


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    created: datetime
    aliases: tuple[str, ...]
    tags: dict[str, str]
    metrics: dict[str, float]  # the last value of each (as MlflowClient.get_run gives them)
    experiment_id: str | None  # None: the version's run is gone
    reports: tuple[str, ...] | None  # the files under reports/; None: could not be listed

    def run_url(self, tracking_uri: str) -> str | None:
        """The run's page in the MLflow UI (http(s) tracking URIs only)."""
        if self.experiment_id is None or not _is_http(tracking_uri):
            return None
        base = tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def moves_from_tags(tags: Mapping[str, str]) -> list[ChampionMove]:
    """The moves of ``@champion`` recorded in a registered model's tags, oldest first (the
    keys start with the move's time in nanoseconds)."""
    moves = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(HISTORY_PREFIX)]
    return [ChampionMove(**m) for m in moves]


def champion_lineage(moves: list[ChampionMove]) -> list[str]:
    """The champions still to roll back through, oldest first: a promotion pushes a version,
    a rollback pops one (so a second rollback goes further back, never forth again)."""
    stack: list[str] = []
    for move in moves:
        if move.kind == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.to_version:  # a history from before this rule
                stack.append(move.to_version)
        else:
            stack.append(move.to_version)
    return stack


# The gate's verdicts a person may promote: passed, or held because the data changed (the gate
# stopped for a person; the pipeline itself only promotes "passed").
PROMOTABLE_GATE = frozenset({"passed", "held"})


def why_refused(tags: Mapping[str, str]) -> str | None:
    """Why ``registry.promote`` refuses a version with these tags (without ``force``), in
        words; None when it may be promoted. The same rule: validation passed, and the gate passed
    or held the version for a person."""
    reasons = []
    if (validation := tags.get("validation")) != "passed":
        detail = tags.get("validation_summary") or "no summary recorded"
        reasons.append(
            f"validation {validation}: {detail}" if validation else "validation not recorded"
        )
    if (gate := tags.get("gate")) not in PROMOTABLE_GATE:
        detail = tags.get("gate_reason") or "no reason recorded"
        reasons.append(f"gate {gate}: {detail}" if gate else "gate not recorded")
    if tags.get("serving_check") == "failed":
        reasons.append(f"serving check failed: {tags.get('serving_check_reason', '')}")
    return "; ".join(reasons) or None


def history(tracking_uri: str, name: str) -> list[ChampionMove]:
    """Every recorded move of ``@champion``, oldest first ([] for an unknown model)."""
    model = _backend(tracking_uri).model(name)
    return [] if model is None else moves_from_tags(model.tags)


def versions(tracking_uri: str, name: str) -> list[str]:
    """The model's existing version numbers, ascending ([] for an unknown model)."""
    return sorted(_backend(tracking_uri).version_numbers(name), key=int)


def version_info(tracking_uri: str, name: str, version: str) -> VersionInfo | None:
    """A version's tags (lineage, checks, promotion), aliases, its run's metrics and where its
    reports are; None when the model has no such version."""
    if not version.isdecimal():
        return None  # MLflow answers "must be an integer": no version by that name either
    backend = _backend(tracking_uri)
    found = backend.version(name, version)
    if found is None:
        return None
    run = backend.run(found.run_id) if found.run_id else None
    reports = backend.artifacts(found.run_id, "reports") if run is not None else None
    return VersionInfo(
        name=name,
        version=version,
        run_id=found.run_id,
        created=datetime.fromtimestamp(found.created_ms / 1000, UTC),
        aliases=found.aliases,
        tags=found.tags,
        metrics={} if run is None else run.metrics,
        experiment_id=None if run is None else run.experiment_id,
        reports=None if reports is None else tuple(sorted(reports)),
    )


def rollback_refusal(tracking_uri: str, name: str) -> str | None:
    """Why ``registry.rollback`` would refuse now (the same words), or None."""
    model = _backend(tracking_uri).model(name)
    current = None if model is None else model.aliases.get(CHAMPION)
    if model is None or current is None:
        return f"{name} has no @champion to roll back"
    lineage = champion_lineage(moves_from_tags(model.tags))
    if len(lineage) < 2 or lineage[-1] != current:
        return f"@champion of {name} (version {current}) has no previous version"
    return None


# What the backends answer, already in the view's types.
@dataclass(frozen=True)
class _Model:
    tags: dict[str, str]
    aliases: dict[str, str]


@dataclass(frozen=True)
class _Version:
    run_id: str
    created_ms: int
    aliases: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class _Run:
    experiment_id: str
    metrics: dict[str, float]


class _Backend(Protocol):
    def model(self, name: str) -> _Model | None: ...
    def version(self, name: str, version: str) -> _Version | None: ...
    def version_numbers(self, name: str) -> list[str]: ...
    def run(self, run_id: str) -> _Run | None: ...
    def artifacts(self, run_id: str, folder: str) -> list[str] | None: ...


def _backend(tracking_uri: str) -> _Backend:
    return _Rest(tracking_uri) if _rest_usable(tracking_uri) else _Mlflow(tracking_uri)


def _is_http(uri: str) -> bool:
    return urllib.parse.urlsplit(uri).scheme in {"http", "https"}


def _rest_usable(uri: str) -> bool:
    """Whether the REST client here talks to ``uri`` as MLflow's client would."""
    mlflow_only_auth = os.environ.get("MLFLOW_TRACKING_AUTH") or _env_flag(
        "MLFLOW_TRACKING_AWS_SIGV4"
    )
    return _is_http(uri) and not mlflow_only_auth and not urllib.parse.urlsplit(uri).username


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"true", "1"}


def _tag_dict(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or []}


class _Absent(Exception):
    """The registry says the thing asked for does not exist."""


class _Rest:
    """MLflow's REST API (2.0 model registry and tracking), read only."""

    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        self.base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self.timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 10)

    def model(self, name: str) -> _Model | None:
        try:
            found = self._get("registered-models/get", name=name)["registered_model"]
        except _Absent:
            return None
        aliases = {a["alias"]: str(a["version"]) for a in found.get("aliases", [])}
        return _Model(_tag_dict(found.get("tags")), aliases)

    def version(self, name: str, version: str) -> _Version | None:
        try:
            found = self._get("model-versions/get", name=name, version=version)["model_version"]
        except _Absent:
            return None
        return _Version(
            run_id=found.get("run_id", ""),
            created_ms=int(found.get("creation_timestamp", 0)),
            aliases=tuple(found.get("aliases", [])),
            tags=_tag_dict(found.get("tags")),
        )

    def version_numbers(self, name: str) -> list[str]:
        numbers: list[str] = []
        token = ""
        while True:
            page = self._get(
                "model-versions/search",
                filter=_name_filter(name),
                max_results="1000",
                **({"page_token": token} if token else {}),
            )
            numbers += [str(v["version"]) for v in page.get("model_versions", [])]
            token = page.get("next_page_token", "")
            if not token:
                return numbers

    def run(self, run_id: str) -> _Run | None:
        try:
            found = self._get("runs/get", run_id=run_id)["run"]
        except _Absent:
            return None
        metrics = found.get("data", {}).get("metrics", [])
        # float() also reads the "NaN"/"Infinity" strings protobuf's JSON writes.
        return _Run(
            str(found["info"]["experiment_id"]), {m["key"]: float(m["value"]) for m in metrics}
        )

    def artifacts(self, run_id: str, folder: str) -> list[str] | None:
        try:
            listing = self._get("artifacts/list", run_id=run_id, path=folder)
        except (_Absent, RegistryUnavailable):
            return None  # the server may not reach the run's artifact store: say "unknown"
        return [f["path"] for f in listing.get("files", []) if not f.get("is_dir")]

    def _get(self, endpoint: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{endpoint}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=_auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=_tls()) as answer:
                body: dict[str, Any] = json.loads(answer.read() or b"{}")
                return body
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc, endpoint) from exc
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, not JSON
            raise RegistryUnavailable(
                f"the MLflow registry at {self.uri} did not answer ({endpoint}): {exc}"
            ) from exc

    def _refusal(self, exc: urllib.error.HTTPError, endpoint: str) -> Exception:
        """An HTTP error answer: "absent" when MLflow says so, else the registry is failing."""
        try:
            error = json.loads(exc.read() or b"{}")
        except ValueError:
            error = {}
        code, message = error.get("error_code", ""), error.get("message", exc.reason)
        # The same rule as registry._absent (a missing alias is a bad parameter "not found").
        if code == "RESOURCE_DOES_NOT_EXIST" or (
            code == "INVALID_PARAMETER_VALUE" and "not found" in str(message).lower()
        ):
            return _Absent(message)
        return RegistryUnavailable(
            f"the MLflow registry at {self.uri} answered {exc.code} to {endpoint}: {message}"
        )


def _name_filter(name: str) -> str:
    if "'" in name:
        raise ValueError(f"quote in model name: {name!r}")
    return f"name = '{name}'"


def _auth_headers() -> dict[str, str]:
    """MLflow's rule: user and password (env, else ~/.mlflow/credentials) as Basic auth, else
    MLFLOW_TRACKING_TOKEN as a bearer token."""
    user, password = _credentials()
    if user and password:
        pair = base64.standard_b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    return {}


def _credentials() -> tuple[str | None, str | None]:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    stored = Path("~/.mlflow/credentials").expanduser()
    if (user and password) or not stored.exists():
        return user, password
    parser = configparser.ConfigParser()
    parser.read(stored)
    section = dict(parser.items("mlflow")) if parser.has_section("mlflow") else {}
    return (
        user or section.get("mlflow_tracking_username"),
        password or section.get("mlflow_tracking_password"),
    )


def _tls() -> ssl.SSLContext | None:
    """TLS as MLflow's settings ask (None: Python's defaults)."""
    insecure = _env_flag("MLFLOW_TRACKING_INSECURE_TLS")
    ca = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if not (insecure or ca or client_cert):
        return None
    context = ssl.create_default_context(cafile=ca)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert)
    return context


class _Mlflow:
    """MlflowClient, for tracking URIs the REST client does not serve (imported only then)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        import aiinfra.release.mlflow_plugins  # noqa: F401 (before any MLflow call)

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def model(self, name: str) -> _Model | None:
        found = self._call(self.client.get_registered_model, name)
        if found is None:
            return None
        aliases = {alias: str(v) for alias, v in (found.aliases or {}).items()}
        return _Model(dict(found.tags), aliases)

    def version(self, name: str, version: str) -> _Version | None:
        found = self._call(self.client.get_model_version, name, version)
        if found is None:
            return None
        return _Version(
            run_id=found.run_id or "",
            created_ms=int(found.creation_timestamp or 0),
            aliases=tuple(found.aliases or ()),
            tags=dict(found.tags),
        )

    def version_numbers(self, name: str) -> list[str]:
        numbers: list[str] = []
        token = None
        while True:
            page = self._call(
                self.client.search_model_versions,
                _name_filter(name),
                max_results=1000,
                page_token=token,
            )
            numbers += [str(v.version) for v in page or []]
            token = None if page is None else page.token
            if not token:
                return numbers

    def run(self, run_id: str) -> _Run | None:
        found = self._call(self.client.get_run, run_id)
        if found is None:
            return None
        return _Run(str(found.info.experiment_id), dict(found.data.metrics))

    def artifacts(self, run_id: str, folder: str) -> list[str] | None:
        try:
            listing = self._call(self.client.list_artifacts, run_id, folder)
        except RegistryUnavailable:
            return None
        return None if listing is None else [f.path for f in listing if not f.is_dir]

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """``method``'s answer; None when MLflow says the thing does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return method(*args, **kwargs)
        except MlflowException as exc:
            message = str(exc.message)
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in message.lower()
            ):
                return None
            raise RegistryUnavailable(f"the MLflow registry at {self.uri}: {message}") from exc
