"""Serve before promote: a version must load and answer in a real serving process before
``@champion`` moves to it.

The offline gate scores the model in the training process. What it cannot see is whether the
registered artifact loads in the service (its packaging, its entry point, the serving
contract), whether it answers there as it did when evaluated, and how fast. So a BentoML
process is started on a free loopback port, pinned to the version (it never follows the
alias, writes no prediction log and answers no user), and sent the newest rows of the label
table: its answers must match the evaluated model's on the same rows and stored features, to
a tolerance, and one-row calls must meet a latency budget (p95). TFX calls this an
InfraValidator.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from aiinfra.ops import local_servers
from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.training.model import TabularModel


@dataclass(frozen=True)
class ServingCheck:
    passed: bool
    reason: str
    rows: int = 0
    max_difference: float | None = None
    p95_ms: float | None = None

    def tags(self) -> dict[str, str]:
        """What is recorded on the version (``registry.promote`` refuses a failed check)."""
        return {
            "serving_check": "passed" if self.passed else "failed",
            "serving_check_reason": self.reason[:4000],
        }

    def markdown(self) -> str:
        """The section appended to the version's gate report."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"## Serving check: {verdict}", "", self.reason, ""]
        if self.rows:
            lines.append(f"- rows answered: {self.rows}")
        if self.max_difference is not None:
            lines.append(
                f"- largest difference from the evaluated model: {self.max_difference:.3g}"
            )
        if self.p95_ms is not None:
            lines.append(f"- one-row /predict p95: {self.p95_ms:.1f} ms")
        return "\n".join(lines) + "\n"


def check_version(
    config: PlatformConfig, version: str, expected: TabularModel, rows: list[dict[str, Any]]
) -> ServingCheck:
    """Serve ``version`` in its own BentoML process and hold it to ``expected`` (the model as
    evaluated) on ``rows`` (request bodies' rows: entity keys and request features)."""
    settings = config.gate.serving_check
    service = _check_service(config, version)
    try:
        local_servers.start(service, timeout=settings.start_timeout_s)
        base = f"http://{config.serving.host}:{service.port}"
        if not local_servers.wait_healthy(f"{base}/readyz", settings.start_timeout_s):
            return ServingCheck(
                False, f"version {version} did not load in the service: {_why(service)}"
            )
        return _compare(config, version, expected, rows, base)
    except local_servers.ServerStartError as exc:
        return ServingCheck(False, f"the serving process did not start: {exc}")
    finally:
        local_servers.stop(service)


def _check_service(config: PlatformConfig, version: str) -> local_servers.Service:
    serving = config.serving.model_copy(
        update={
            "port": local_servers.free_port(config.serving.host),
            "pinned_version": version,
            "log_sample_rate": 0.0,  # its answers are no one's predictions
            "poll_seconds": 3600.0,
        }
    )
    plain = local_servers.bentoml_service(config.model_copy(update={"serving": serving}))
    # Its own pid and log files: the home's service (if any) is another server.
    return dataclasses.replace(plain, name=f"bentoml-check-v{version}")


def _compare(
    config: PlatformConfig,
    version: str,
    expected: TabularModel,
    rows: list[dict[str, Any]],
    base: str,
) -> ServingCheck:
    from aiinfra.runtime.api import OnlineFeatures, UnknownEntities

    settings = config.gate.serving_check
    reader = OnlineFeatures(config, expected.schema)
    known = []
    for row in rows:  # rows the online store knows: the others have nothing to compare
        try:
            reader.frame([row])
            known.append(row)
        except UnknownEntities:
            continue
    if not known:
        return ServingCheck(False, "none of the sample rows has stored features to answer with")
    wanted = np.asarray(expected.predict(reader.frame(known)), dtype=float).reshape(len(known), -1)
    with httpx.Client(base_url=base, timeout=30) as client:
        answer = client.post("/predict", json={"rows": known})
        if answer.status_code != 200:
            return ServingCheck(
                False, f"/predict answered {answer.status_code}: {answer.text[:300]}"
            )
        body = answer.json()
        if body.get("model_version") != version:
            return ServingCheck(
                False, f"the service answered with version {body.get('model_version')}"
            )
        served = _answers(expected.schema, body["predictions"], expected.classes)
        difference = float(np.max(np.abs(served - wanted)))
        latencies = _latencies(client, known[: settings.rows])
    p95 = float(np.percentile(latencies, 95))

    def result(passed: bool, reason: str) -> ServingCheck:
        return ServingCheck(passed, reason, len(known), difference, p95)

    if difference > settings.tolerance:
        return result(
            False,
            f"the service's answers differ from the evaluated model's by up to {difference:.3g} "
            f"(tolerance {settings.tolerance:g}) on {len(known)} rows",
        )
    if p95 > settings.p95_ms:
        return result(
            False,
            f"one-row /predict p95 {p95:.1f} ms is over the budget of {settings.p95_ms:g} ms "
            "(gate.serving_check.p95_ms)",
        )
    return result(
        True,
        f"answered {len(known)} rows as evaluated (largest difference {difference:.3g}); "
        f"p95 {p95:.1f} ms within {settings.p95_ms:g} ms",
    )


def _latencies(client: httpx.Client, rows: list[dict[str, Any]]) -> list[float]:
    client.post("/predict", json={"rows": rows[:1]})  # the first call warms the path
    spent = []
    for row in rows:
        started = time.perf_counter()
        client.post("/predict", json={"rows": [row]}).raise_for_status()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def _answers(schema: Schema, predictions: list[dict[str, Any]], classes: list[Any]) -> np.ndarray:
    """The service's answers as the same array (see ``aiinfra.runtime.api.answers``)."""
    if schema.task == "binary":
        return np.array([[p["probability"]] for p in predictions], dtype=float)
    if schema.task == "multiclass":
        return np.array(
            [[p["probabilities"][str(c)] for c in classes] for p in predictions], dtype=float
        )
    return np.array([[p["value"]] for p in predictions], dtype=float)


def _why(service: local_servers.Service) -> str:
    """The service's own account: the last error lines of its log."""
    if not service.log_file.exists():
        return "no log"
    lines = [line for line in service.log_file.read_text(errors="replace").splitlines() if line]
    errors = [line for line in lines if "ERROR" in line or "not deployed" in line]
    return str((errors or lines or ["no log"])[-1][:500])
