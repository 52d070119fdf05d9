"""Every prediction request's outcome, for monitoring: its status and latency, per UTC day.

The prediction log keeps a sample of the answered rows; it cannot tell how many requests failed
or how long they took. :class:`RequestOutcomes` (ASGI middleware, installed outermost) records
every ``POST /predict`` and ``/predict_batch``, refusals included (the guard's 413/415/503, the
host check's and validation's 400, an unknown entity's 404), as one JSON line in
``requests-YYYY-MM-DD.jsonl``, beside the prediction log::

    {"at": "2026-01-02T03:04:05.678+00:00", "path": "/predict", "status": 200,
     "latency_ms": 3.1, "request_id": "..."}

``at`` is when the request arrived; ``latency_ms`` runs from then to the response's status line
(the answer's first byte, not its last); ``request_id`` is the ``X-Request-ID`` answered (null
when the request failed before an answer was made). BentoML's own traffic layer wraps every
middleware a service adds: a request it cancels at ``traffic.timeout`` is recorded as the 504
it answers; the 429 of its ``max_concurrency`` (not set by this service) would not be seen.

The lines are written as the prediction log's are
(:class:`~aiinfra.runtime.prediction_log.DailyJsonl`): from a background thread, never slowing
or failing a request, with the same retention. :func:`read_outcomes` reads them back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiinfra.runtime.prediction_log import DailyJsonl, read_entries
from aiinfra.runtime.request_id import HEADER

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "requests-"
PATHS = frozenset({"/predict", "/predict_batch"})
_REQUEST_ID = HEADER.lower().encode()


@dataclass(frozen=True)
class Outcome:
    """One request's outcome, as the middleware saw it."""

    at: datetime
    path: str
    status: int
    latency_ms: float
    request_id: str | None

    def lines(self) -> list[str]:
        line = {
            "at": self.at.isoformat(timespec="milliseconds"),
            "path": self.path,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
            "request_id": self.request_id,
        }
        return [json.dumps(line)]


def read_outcomes(directory: Path, since: datetime) -> Iterator[dict[str, Any]]:
    """Recorded outcomes at or after ``since``, oldest first; torn lines are skipped."""
    yield from read_entries(directory, since, PREFIX)


class RequestOutcomes:
    """ASGI middleware: one :class:`Outcome` per POST to ``paths``. Installed outermost, it sees
    the status and request id the client gets, whichever layer answered."""

    def __init__(
        self,
        app: ASGIApp,
        directory: Path,
        retention_days: int = 30,
        paths: Iterable[str] = PATHS,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        # Made here, in the server's worker (Starlette builds its middleware there, on the
        # first call), not in every process that imports the service.
        self.log = DailyJsonl(directory, PREFIX, retention_days, name="request-outcomes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        at, started = datetime.now(UTC), time.perf_counter()
        status: int | None = None
        latency_ms = 0.0
        request_id: str | None = None

        async def sending(message: Message) -> None:
            nonlocal status, latency_ms, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                latency_ms = (time.perf_counter() - started) * 1000
                request_id = _header(message, _REQUEST_ID)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:
            if status is None:  # what the layers outside this one answer instead
                status = _unanswered_status(exc)
                latency_ms = (time.perf_counter() - started) * 1000
            raise
        finally:
            if status is not None:
                self.log.put(Outcome(at, scope["path"], status, latency_ms, request_id))


def _unanswered_status(exc: BaseException) -> int:
    """The status a request that raised before answering gets: cancelled, it ran past
    BentoML's ``traffic.timeout`` (its TimeoutMiddleware answers 504); any other error gets
    Starlette's 500."""
    return 504 if isinstance(exc, asyncio.CancelledError) else 500


def _header(message: Message, name: bytes) -> str | None:
    for key, value in message.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None
