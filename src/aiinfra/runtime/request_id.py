"""A request id on every answer of the service: what ``aiinfra trace ID`` starts from.

:class:`RequestId` (ASGI middleware, installed outermost) takes the caller's ``X-Request-ID``
when it is a sane token (at most 64 of ``A-Z a-z 0-9 . _ -``: it ends up in logs and on the
command line), else makes a uuid4; every response leaves with it in ``X-Request-ID``, errors
included. While the request runs the id is :func:`current`: a context variable, which the
thread an endpoint runs in inherits (anyio copies the context), so ``/predict`` can put it in
its answer and in the prediction log.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_RAW_HEADER = HEADER.lower().encode()
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept(offered: str | None) -> str:
    """``offered`` if it is a sane token, else a new id."""
    return offered if offered is not None and _SANE.fullmatch(offered) else uuid.uuid4().hex


def current() -> str | None:
    """The id of the request being answered (None outside a request)."""
    return _current.get()


def _offered(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _RAW_HEADER:  # ASGI servers give header names lower-cased
            return str(value.decode("latin-1"))
    return None


class RequestId:
    """ASGI middleware: every HTTP response carries the request's id in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept(_offered(scope))
        stamp = (_RAW_HEADER, request_id.encode())

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() != _RAW_HEADER]
                message = {**message, "headers": [*kept, stamp]}
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, sending)
        finally:
            _current.reset(token)
