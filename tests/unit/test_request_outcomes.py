"""Every prediction request's outcome is recorded, refusals and failures included, with the
status and request id the client got; the lines read back past a torn one, and only their own
files are pruned."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from aiinfra.runtime.guards import Drain, RequestGuard, UniformErrors
from aiinfra.runtime.prediction_log import day_file
from aiinfra.runtime.request_id import RequestId
from aiinfra.runtime.request_outcomes import PREFIX, RequestOutcomes, read_outcomes

JSON = {"content-type": "application/json"}


async def _predict(request: Request) -> JSONResponse:
    await asyncio.sleep(0.02)  # a latency the record must show
    body = await request.json()
    if body.get("entity") == "unknown":
        return JSONResponse({"error": "no stored features"}, status_code=404)
    return JSONResponse({"predictions": [1]})


def _service(log_dir: Path) -> Starlette:
    """A stand-in for the service: its middleware in the service's order, around an endpoint."""
    return Starlette(
        routes=[Route(path, _predict, methods=["POST"]) for path in ("/predict", "/other")],
        middleware=[
            Middleware(RequestOutcomes, directory=log_dir),
            Middleware(RequestId),
            Middleware(UniformErrors),
            Middleware(RequestGuard, max_body_bytes=1000, retry_after_seconds=1, drain=Drain()),
        ],
    )


async def _send_all(app: Starlette) -> list[httpx.Response]:
    """The recorded requests, then two that are not: another path, and a GET."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answers = [
            await client.post("/predict", json={"entity": "known"}),
            await client.post("/predict", json={"entity": "unknown"}),
            await client.post("/predict", content=b"rows", headers={"content-type": "text/plain"}),
            await client.post("/predict", content=b"x" * 2000, headers=JSON),
        ]
        await client.post("/other", json={})
        await client.get("/predict")
    return answers


def _recorded(outcomes: RequestOutcomes, log_dir: Path) -> list[dict[str, Any]]:
    outcomes.log.flush()
    return list(read_outcomes(log_dir, datetime.now(UTC) - timedelta(minutes=1)))


def test_every_post_is_recorded_with_what_the_client_got(tmp_path: Path) -> None:
    app = _service(tmp_path)
    answers = asyncio.run(_send_all(app))
    assert [a.status_code for a in answers] == [200, 404, 415, 413]
    outcomes = app.middleware_stack.app  # type: ignore[union-attr]  # inside ServerErrors
    assert isinstance(outcomes, RequestOutcomes)
    lines = _recorded(outcomes, tmp_path)
    assert [line["status"] for line in lines] == [200, 404, 415, 413]
    assert [line["request_id"] for line in lines] == [a.headers["x-request-id"] for a in answers]
    assert {line["path"] for line in lines} == {"/predict"}
    assert lines[0]["latency_ms"] >= 20 and lines[1]["latency_ms"] >= 20  # the endpoint's sleep
    assert lines[2]["latency_ms"] < 20  # refused before the endpoint
    assert all(datetime.fromisoformat(line["at"]).tzinfo is not None for line in lines)
    assert set(lines[0]) == {"at", "path", "status", "latency_ms", "request_id"}


async def _call(outcomes: RequestOutcomes) -> None:
    scope: Scope = {"type": "http", "method": "POST", "path": "/predict_batch", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        pass

    await outcomes(scope, receive, send)


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RuntimeError("the model broke"), 500), (asyncio.CancelledError(), 504)],
)
def test_a_request_that_raised_before_answering_is_recorded_with_the_status_it_gets(
    tmp_path: Path, failure: BaseException, status: int
) -> None:
    """An error escapes to Starlette's 500; a cancel is BentoML's timeout, answered 504."""

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise failure

    outcomes = RequestOutcomes(failing, tmp_path)
    with pytest.raises(type(failure)):
        asyncio.run(_call(outcomes))
    (line,) = _recorded(outcomes, tmp_path)
    assert line["status"] == status and line["path"] == "/predict_batch"
    assert line["request_id"] is None and line["latency_ms"] >= 0


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    whole = json.dumps({"at": now.isoformat(), "path": "/predict", "status": 200})
    day_file(tmp_path, now, PREFIX).write_text(whole + "\n" + whole[: len(whole) // 2])
    assert [line["status"] for line in read_outcomes(tmp_path, now - timedelta(minutes=1))] == [200]


def test_only_outcome_files_past_the_retention_are_deleted(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old, kept = now - timedelta(days=10), now - timedelta(days=2)
    for day in (old, kept):
        day_file(tmp_path, day, PREFIX).write_text("{}\n")
    predictions = day_file(tmp_path, old)  # the prediction log's, in the same directory
    predictions.write_text("{}\n")

    async def answering(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    outcomes = RequestOutcomes(answering, tmp_path, retention_days=7)
    asyncio.run(_call(outcomes))
    outcomes.log.flush()
    assert not day_file(tmp_path, old, PREFIX).exists()
    assert day_file(tmp_path, kept, PREFIX).exists() and day_file(tmp_path, now, PREFIX).exists()
    assert predictions.exists()  # another log's retention
