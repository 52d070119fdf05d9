"""What the service refuses before a request reaches the model or the registry hook.

- A body that is not JSON (``Content-Type`` other than ``application/json``) gets 415: a
  browser page may send a "simple" cross-site POST (``text/plain``) to a loopback service
  without a preflight, and such a request must not write into the prediction log that drives
  retraining.
- A body over the configured limit gets 413, before anything parses it (the webhook's
  signature check included). The body is buffered here, at most the limit, and handed on.
- Every 503 carries ``Retry-After``, so clients and proxies back off instead of hammering.
- On SIGTERM the service drains (:class:`Drain`): requests already in flight finish, new ones
  get 503 with ``Connection: close``; then the server's own shutdown runs. Without this the
  server stops accepting at once while the listening socket stays open in BentoML's
  supervisor, and every connection made meanwhile is reset unanswered.

The ``Host`` allow-list (against DNS rebinding) is Starlette's ``TrustedHostMiddleware``,
installed beside this one by the service.

Every error answers one shape, :func:`error_body` (declared as ``Error`` in the OpenAPI
document): these refusals, and through :class:`UniformErrors` whatever else the service's
parts answer (BentoML, the webhook's FastAPI app, Starlette's routing and host check).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from http import HTTPStatus
from types import FrameType
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = {"POST", "PUT", "PATCH"}
# BentoML answers every 5xx an endpoint raises with this text, whatever the reason.
_BENTOML_5XX = "An unexpected error has occurred"
_UNAVAILABLE = (
    "the service cannot answer now: not ready (see /readyz: no champion model loaded, or the "
    "feature store is down) or overloaded; retry after Retry-After seconds"
)

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "What every 4xx and 5xx answer holds.",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "what is wrong, naming the field or entity"},
        "detail": {
            "type": "array",
            "description": "only when the body fails validation: one entry per problem",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "description": "where: field names and row positions",
                        "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string", "description": "pydantic's error type"},
                },
            },
        },
    },
}


def error_body(message: str, detail: list[Any] | None = None) -> dict[str, Any]:
    """The one shape of every error answer (``ERROR_SCHEMA``)."""
    return {"error": message} if detail is None else {"error": message, "detail": detail}


def uniform_error(status: int, media_type: str, body: bytes) -> dict[str, Any]:
    """An error answer as :func:`error_body`, whatever shape its maker gave it: BentoML's
    ``{"error", "detail"}``, and its 4xx as a one-element list (bentoml/BentoML#4232);
    FastAPI's ``{"detail": message or errors}``; Starlette's plain text."""
    payload = _json(body) if media_type.split(";")[0].strip() == "application/json" else None
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if isinstance(payload, dict):
        message = payload.get("error", payload.get("detail"))
        detail = payload.get("detail")
        if isinstance(message, list):  # FastAPI's validation errors
            return error_body("invalid request", message)
        if isinstance(message, str):
            if status == 503 and message.startswith(_BENTOML_5XX):
                message = _UNAVAILABLE
            return error_body(message, detail if isinstance(detail, list) else None)
    text = body.decode("utf-8", "replace").strip()
    return error_body(text or HTTPStatus(status).phrase)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class Drain:
    """Requests in flight, and whether the service is shutting down (shared by the guard,
    which counts and refuses, and the service, which installs the signal handler)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0

    def on_sigterm(self, timeout: float) -> None:
        """From now on, SIGTERM starts a drain of at most ``timeout`` seconds and then hands
        the signal to the handler it replaced (the server's, which stops and exits). Call it
        from the main thread, after the server installed its own handlers."""
        previous = signal.getsignal(signal.SIGTERM)

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                return
            self.draining = True

            def finish() -> None:
                deadline = time.monotonic() + timeout
                while self.in_flight > 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                if callable(previous):
                    previous(signum, frame)

            threading.Thread(target=finish, name="drain", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)


class RequestGuard:
    """ASGI middleware: draining, content type, body size, and Retry-After on 503."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, retry_after_seconds: int, drain: Drain
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after_seconds).encode()
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_retry_after(send)
        if self.drain.draining:
            await _refuse(send, 503, "shutting down", [(b"connection", b"close")])
            return
        self.drain.in_flight += 1  # one event loop: no lock needed
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.drain.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            await _refuse(send, 415, f"Content-Type must be application/json, not {media_type!r}")
            return
        declared = headers.get("content-length", "0")
        if not declared.isdigit():
            await _refuse(send, 400, "bad Content-Length")
            return
        if int(declared) > self.max_body_bytes:
            await _refuse(send, 413, f"body over {self.max_body_bytes} bytes")
            return
        body = await self._read(receive)
        if body is None:  # a chunked body that grew past the limit
            await _refuse(send, 413, f"body over {self.max_body_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _with_retry_after(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    headers.append((b"retry-after", self.retry_after))
                message = {**message, "headers": headers}
            await send(message)

        return sending


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then waits on the real one (for a
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(error_body(detail)).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": _json_headers(body, extra)}
    )
    await send({"type": "http.response.body", "body": body})


def _json_headers(
    body: bytes, others: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """``others``, with the content type and length of the JSON ``body``."""
    kept = [
        (k, v) for k, v in others or [] if k.lower() not in (b"content-type", b"content-length")
    ]
    length = str(len(body)).encode()
    return [(b"content-type", b"application/json"), (b"content-length", length), *kept]


class UniformErrors:
    """ASGI middleware: every 4xx and 5xx answer leaves as :func:`error_body`. Installed
    outermost, so it covers the host check, the guard, BentoML and the webhook's app. Error
    answers are small: their body is buffered and rewritten; any other passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":  # HEAD: no body to rewrite
            await self.app(scope, receive, send)
            return
        error: Message | None = None
        chunks: list[bytes] = []

        async def sending(message: Message) -> None:
            nonlocal error
            if message["type"] == "http.response.start" and message["status"] >= 400:
                error = message  # sent with the rewritten body
                return
            if error is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_uniform(send, error, b"".join(chunks))

        await self.app(scope, receive, sending)

    @staticmethod
    async def _send_uniform(send: Send, start: Message, body: bytes) -> None:
        headers = list(start.get("headers", []))
        media_type = Headers(raw=headers).get("content-type", "")
        uniform = json.dumps(uniform_error(start["status"], media_type, body)).encode()
        await send({**start, "headers": _json_headers(uniform, headers)})
        await send({"type": "http.response.body", "body": uniform})
