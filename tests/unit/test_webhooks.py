import json
import time

import pytest

from aiinfra.release import webhooks

SECRET = "s3cret"
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-11-29T00:00:00+00:00",
        "data": {"name": "loan-default", "alias": "champion", "version": "7"},
    }
).encode()


def _headers(secret: str = SECRET, body: bytes = BODY, at: float | None = None) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    return {
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": webhooks.sign(secret, "d-1", stamp, body),
    }


def test_signature_matches_mlflows_own_signer() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert webhooks.sign(SECRET, "d-1", "100", BODY) == _generate_hmac_signature(
        SECRET, "d-1", "100", BODY.decode()
    )


def test_valid_delivery_is_accepted_and_parsed() -> None:
    webhooks.verify(SECRET, _headers(), BODY)
    assert webhooks.parse_alias_event(BODY) == webhooks.AliasMoved("loan-default", "champion", "7")


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        (_headers(secret="wrong"), BODY, "does not match"),
        (_headers(), BODY.replace(b'"7"', b'"8"'), "does not match"),
        ({}, BODY, "missing"),
        (_headers(at=time.time() - 3600), BODY, "replay"),
    ],
)
def test_forged_tampered_unsigned_or_stale_deliveries_are_rejected(
    headers: dict[str, str], body: bytes, problem: str
) -> None:
    with pytest.raises(webhooks.InvalidDelivery, match=problem):
        webhooks.verify(SECRET, headers, body)


def test_an_empty_secret_rejects_everything() -> None:
    with pytest.raises(webhooks.InvalidDelivery):
        webhooks.verify("", _headers(secret=""), BODY)


def test_other_events_are_not_alias_moves() -> None:
    other = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    assert webhooks.parse_alias_event(other) is None
