"""MLflow registry webhooks: the registry calls the serving deployment when ``@champion`` moves.

MLflow (OSS 3.x, SQL backend) signs each delivery with HMAC-SHA256 over
``"<delivery id>.<unix timestamp>.<body>"`` with the webhook's secret, base64-encoded as
``v1,<signature>``. The receiver rejects anything unsigned, mis-signed or stale (a replayed
delivery), before it looks at the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from mlflow import MlflowClient

import aiinfra.release.mlflow_plugins  # noqa: F401 (before any MLflow call)

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
SECRET_ENV = "AIINFRA_WEBHOOK_SECRET"
ALIAS_CREATED: Final = "model_version_alias.created"
MAX_AGE_SECONDS = 300


class InvalidDelivery(ValueError):
    """The request is not an authentic, fresh MLflow delivery."""


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> None:
    """Raise InvalidDelivery unless ``headers`` carry a valid, fresh signature of ``body``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delivery_id = lowered.get(DELIVERY_HEADER)
    timestamp = lowered.get(TIMESTAMP_HEADER)
    signature = lowered.get(SIGNATURE_HEADER)
    if not (secret and delivery_id and timestamp and signature):
        raise InvalidDelivery("missing signature, timestamp or delivery id header")
    if not (signature.isascii() and delivery_id.isascii() and timestamp.isascii()):
        raise InvalidDelivery("signature headers must be ASCII")
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, body), signature):
        raise InvalidDelivery("signature does not match")
    try:
        age = (now if now is not None else time.time()) - int(timestamp)
    except ValueError as exc:
        raise InvalidDelivery(f"bad timestamp {timestamp!r}") from exc
    if abs(age) > MAX_AGE_SECONDS:
        raise InvalidDelivery(f"delivery is {age:.0f}s old (max {MAX_AGE_SECONDS}s): replay?")


@dataclass(frozen=True)
class AliasMoved:
    model: str
    alias: str
    version: str


def parse_alias_event(body: bytes) -> AliasMoved | None:
    """The alias move in a delivery, or None for other events."""
    payload: Any = json.loads(body)
    if not isinstance(payload, dict):
        raise ValueError("the body is not a JSON object")
    if f"{payload.get('entity')}.{payload.get('action')}" != ALIAS_CREATED:
        return None
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        raise ValueError("its data is not a JSON object")
    return AliasMoved(str(data["name"]), str(data["alias"]), str(data["version"]))


def register(tracking_uri: str, name: str, url: str, secret: str) -> str:
    """Create (or replace) the webhook named ``name`` calling ``url`` on alias moves."""
    c = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for hook in c.list_webhooks():
        if hook.name == name:
            c.delete_webhook(hook.webhook_id)
    hook = c.create_webhook(name=name, url=url, events=[ALIAS_CREATED], secret=secret)
    return str(hook.webhook_id)
